"""The API over HTTP against the real PostgreSQL, as the application role (row-level security on)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.pool import NullPool

from flowdeck_api.app import create_app
from flowdeck_api.auth import mint_token
from flowdeck_runtime.settings import AuthSettings, DatabaseSettings, RedisSettings, Settings
from flowdeck_store import TenantModel, bind_tenant, create_engine, session_factory
from tests.integration.conftest import Database

ROOT = Path(__file__).resolve().parents[3]
EXPENSE = (ROOT / "examples/documents/expense-approval.yaml").read_bytes()
YAML = {"content-type": "application/yaml"}


@dataclass
class Api:
    client: httpx.AsyncClient
    settings: Settings
    database: Database
    tenants: list[uuid.UUID] = field(default_factory=list)
    app: Litestar | None = None

    async def tenant(self, slug: str = "acme", status: str = "active") -> uuid.UUID:
        tenant = uuid.uuid4()
        db = create_engine(self.settings.database.url, poolclass=NullPool)  # the app's own database
        try:
            async with session_factory(db)() as session:
                bind_tenant(session, tenant)
                async with session.begin():
                    session.add(TenantModel(id=tenant, slug=f"{slug}-{tenant.hex[:8]}", name=slug, status=status))
        finally:
            await db.dispose()
        return tenant

    def token(self, tenant: uuid.UUID, user: str, *roles: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
        s = self.settings.auth
        token = mint_token(
            s.dev_secret(),
            issuer=s.issuer,
            audience=s.audience,
            tenant_id=tenant,
            subject=user,
            roles=roles or ("member",),
            groups=groups,
        )
        return {"authorization": f"Bearer {token}"}


def make_settings(database: Database, secret_file: Path) -> Settings:
    return Settings(
        mode="production",
        database=DatabaseSettings(url=database.app_url, admin_url=database.owner_url),
        redis=RedisSettings(url=None),
        auth=AuthSettings(
            issuer="flowdeck-test",
            audience="flowdeck",
            algorithms=("HS256",),
            jwks_url=None,
            dev_secret_file=secret_file,
        ),
    )


@pytest.fixture
async def api(truncated: Database, tmp_path: Path) -> AsyncIterator[Api]:
    """The app served in the test's event loop through httpx's ASGI transport: requests run
    concurrently as on a real server (Litestar's test client serves one at a time)."""
    settings = make_settings(truncated, tmp_path / "dev-secret")
    app = create_app(settings)
    async with served(app) as client:
        yield Api(client, settings, truncated, app=app)


@asynccontextmanager
async def served(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``app`` through httpx's ASGI transport; the app's shutdown hooks run at the end.

    (Not ``app.lifespan()``: its cancel scope cannot span a fixture's setup and teardown, which
    run in different tasks; the app has no startup hooks.)
    """
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            yield client
    finally:
        for hook in app.on_shutdown:
            await hook(app)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh copy of the migrated SQLite database (the embedded mode's)."""
    path = tmp_path / "embedded.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def embedded(api: Api, sqlite_url: str) -> AsyncIterator[Api]:
    """The app on the embedded mode's SQLite database (no row-level security there)."""
    database = DatabaseSettings(url=sqlite_url, admin_url=sqlite_url)
    settings = replace(api.settings, mode="embedded", database=database)
    app = create_app(settings)
    async with served(app) as client:
        yield Api(client, settings, api.database, app=app)
