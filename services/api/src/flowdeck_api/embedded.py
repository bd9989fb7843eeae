"""``make run``: Flowdeck on the embedded default, with a demo tenant ready to use.

SQLite in ``$FLOWDECK_HOME`` (``.flowdeck/``), no Redis. The production code paths run in one
process: requests hand machine steps to an in-process queue (in place of SAQ) that the worker's
job loop takes them from, and the scheduler fires timers, reminders and escalations, delivers
outbound webhooks and re-sends lost work (:mod:`flowdeck_worker.embedded`). On start it migrates
the database, creates (once) a demo tenant with two users and a group, uploads the example
workflow documents, prints development tokens and a few ``curl`` commands, and serves the API
until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from alembic import command
from alembic.config import Config
from sqlalchemy import select

from flowdeck_api.app import create_app
from flowdeck_api.auth import mint_token
from flowdeck_api.domain.definitions.service import DefinitionService
from flowdeck_api.errors import ApiError
from flowdeck_runtime.inprocess import InProcessQueue
from flowdeck_runtime.settings import Settings, load_settings
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import TenantModel, create_engine, session_factory
from flowdeck_worker.embedded import in_process
from flowdeck_worker.services import Services

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar import Litestar

ROOT = Path(__file__).resolve().parents[4]
DEMO_TENANT = uuid.uuid5(uuid.NAMESPACE_URL, "https://flowdeck.dev/demo-tenant")
USERS = {
    "admin": (("admin",), ()),
    "alice": (("member",), ()),
    "bob": (("member",), ("managers",)),
}


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the latest schema."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


async def seed(settings: Settings) -> list[str]:
    """Create the demo tenant and upload the example documents (both once); the names uploaded."""
    engine = create_engine(settings.database.url)
    tenants = Tenants(session_factory(engine))
    uploaded: list[str] = []
    try:
        async with tenants.transaction(DEMO_TENANT) as session:
            if (await session.execute(select(TenantModel.id).where(TenantModel.id == DEMO_TENANT))).first() is None:
                session.add(TenantModel(id=DEMO_TENANT, slug="demo", name="Demo Corp"))
        definitions = DefinitionService(tenants, DEMO_TENANT)
        for path in sorted((ROOT / "examples/documents").glob("*.yaml")):
            try:
                created = await definitions.upload(path.read_bytes(), "yaml")
                uploaded.append(f"{created.name} {created.version}")
            except ApiError as exc:
                if exc.code != "definition_exists":
                    raise
    finally:
        await engine.dispose()
    return uploaded


def embedded_app(settings: Settings) -> Litestar:
    """The API with its worker and scheduler in the same process, on an in-process queue."""
    queue = InProcessQueue()

    @asynccontextmanager
    async def worker_and_scheduler(app: Litestar) -> AsyncIterator[None]:
        async with in_process(Services(settings, app.state.db_engine, app.state.tenants, queue)):
            yield

    return create_app(settings, step_queue=queue, lifespan=[worker_and_scheduler])


def banner(settings: Settings, base: str, uploaded: list[str]) -> str:
    """What to copy and paste to see Flowdeck work."""
    secret = settings.auth.dev_secret()
    tokens = {
        user: mint_token(
            secret,
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            tenant_id=DEMO_TENANT,
            subject=user,
            roles=roles,
            groups=groups,
        )
        for user, (roles, groups) in USERS.items()
    }
    start = shlex.quote(
        '{"workflow": "expense-approval", "input": {"amount": 250, "employee_id": "alice", "manager_id": "bob"}}'
    )
    lines = [
        "",
        "Flowdeck is running (embedded: SQLite, in-process worker and scheduler, no Redis).",
        f"  API docs:     {base}/docs",
        f"  health:       {base}/v1/health/ready",
        f"  demo tenant:  {DEMO_TENANT}  (users: admin, alice, bob; bob is in group 'managers')",
        f"  definitions:  {', '.join(uploaded) if uploaded else 'already uploaded'}",
        "",
        f"Development tokens (valid 12 hours; signed with the generated secret in {settings.auth.dev_secret_file}):",
        *(f"  export {user.upper()}={token}" for user, token in tokens.items()),
        "",
        "Try it: alice starts an expense claim, bob approves it.",
        f'  curl -s -X POST {base}/v1/instances -H "Authorization: Bearer $ALICE" '
        f"-H 'Content-Type: application/json' -d {start}",
        f'  curl -s {base}/v1/tasks -H "Authorization: Bearer $BOB"',
        f'  TASK=$(curl -s {base}/v1/tasks -H "Authorization: Bearer $BOB" '
        '| python3 -c \'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])\')',
        f'  curl -s -X POST {base}/v1/tasks/$TASK/complete -H "Authorization: Bearer $BOB" '
        "-H 'Content-Type: application/json' -d '{\"data\": {\"approved\": true}}'",
        f'  curl -s {base}/v1/instances -H "Authorization: Bearer $ALICE"',
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Migrate, seed, print the banner, serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("FLOWDECK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("FLOWDECK_PORT", "8000")))
    args = parser.parse_args(argv)
    settings = load_settings()
    if not settings.database.is_sqlite:
        raise SystemExit("make run is the embedded mode: unset FLOWDECK_DATABASE_URL (SQLite is the default)")
    home = Path(os.environ.get("FLOWDECK_HOME", ".flowdeck"))
    home.mkdir(parents=True, exist_ok=True)
    migrate(settings.database.url)
    uploaded = asyncio.run(seed(settings))
    print(banner(settings, f"http://{args.host}:{args.port}", uploaded), flush=True)
    uvicorn.run(embedded_app(settings), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
