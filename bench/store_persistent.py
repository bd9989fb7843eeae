"""Durable throughput: Flowdeck's PersistentExecutionEngine versus litestar-workflows 0.3.3's.

Starts its own PostgreSQL with durable settings (fsync, synchronous_commit and full_page_writes
on), migrates it with alembic, and runs N instances (default 2,000, after a warm-up) of

  (a) linear: three machine steps, each setting one context value;
  (b) human:  machine -> human -> machine, the task completed as soon as the start returned;

with K instances in flight (asyncio.gather behind a semaphore; a pool of K connections).
Flowdeck runs as the application role under row-level security, over the Unix socket; every
instance is checked (completed, with its own data and every step's value). The peer runs in
its own venv (``bench/_peer_store.py``) on a database of its own on the same server, a session
per instance, counting only instances it reports completed. pgbench's commit rate on the same
server (``pgbench -N``, K clients) is printed as the ceiling.

Run: ``.venv/bin/python bench/store_persistent.py [--n 2000] [--k 64] [--json] [--no-peer]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from argparse import Namespace
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from tests.integration.servers import PostgresServer, _as_postgres, _pg_bin, start_postgres  # noqa: E402

PEER_VENV = ROOT / ".bench" / "peer-venv"
PEER_REQUIREMENT = "litestar-workflows[db]==0.3.3"
WORKLOADS = {"linear": "(a) 3 machine steps", "human": "(b) machine -> human -> machine"}
TARGETS = {"linear": 1500, "human": 800}
WARMUP = 200


def prepare(server: PostgresServer) -> tuple[str, str]:
    """Owner role and database, migrations, a login for the app role; (app URL, peer URL)."""
    server.psql("CREATE ROLE flowdeck_owner LOGIN CREATEROLE")
    server.psql("CREATE DATABASE flowdeck OWNER flowdeck_owner")
    server.psql("CREATE DATABASE peer")
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", server.url("flowdeck_owner", "flowdeck").replace("%", "%%"))
    config.cmd_opts = Namespace(x=["app_role=flowdeck_app"])
    command.upgrade(config, "head")
    server.psql("ALTER ROLE flowdeck_app LOGIN")
    return server.socket_url("flowdeck_app", "flowdeck"), server.socket_url(database="peer")


async def run_flowdeck(url: str, n: int, k: int) -> dict[str, Any]:
    from flowdeck_engine import (
        BaseHumanStep,
        BaseMachineStep,
        Edge,
        WorkflowContext,
        WorkflowDefinition,
        WorkflowRegistry,
        WorkflowStatus,
    )
    from flowdeck_store import PersistentExecutionEngine, TenantModel, bind_tenant, create_engine, session_factory

    class SetFlag(BaseMachineStep):
        async def execute(self, context: WorkflowContext) -> None:
            context.set(self.name, True)

    class Approve(BaseHumanStep):
        name = "approve"
        title = "Approve"

    registry = WorkflowRegistry()
    for name, steps in (("linear", [SetFlag("s1"), SetFlag("s2"), SetFlag("s3")]),
                        ("human", [SetFlag("s1"), Approve(), SetFlag("s3")])):  # fmt: skip
        registry.register_definition(
            WorkflowDefinition(
                name=name,
                steps={s.name: s for s in steps},
                edges=[Edge(a.name, b.name) for a, b in pairwise(steps)],
                initial_step=steps[0].name,
                terminal_steps={steps[-1].name},
            )
        )
    db = create_engine(url, pool_size=k, max_overflow=0)
    sessions = session_factory(db)
    tenant = uuid.uuid4()
    async with sessions() as session:
        bind_tenant(session, tenant)
        async with session.begin():
            session.add(TenantModel(id=tenant, slug="bench", name="bench"))
    engine = PersistentExecutionEngine(registry, sessions, tenant_id=tenant)
    done = WorkflowStatus.COMPLETED

    def ok(instance: Any, i: int, keys: tuple[str, ...]) -> bool:
        return (
            instance.status is done and instance.data.get("n") == i and all(instance.data.get(x) is True for x in keys)
        )

    async def linear(i: int) -> bool:
        return ok(await engine.start_workflow("linear", {"n": i}), i, ("s1", "s2", "s3"))

    async def human(i: int) -> bool:
        instance = await engine.start_workflow("human", {"n": i})
        if instance.status is not WorkflowStatus.WAITING:
            return False
        instance = await engine.complete_human_task(instance.id, "approve", "u1", {"approved": True})
        return ok(instance, i, ("s1", "approved", "s3"))

    results = {"linear": await measure(linear, n, k), "human": await measure(human, n, k)}
    await db.dispose()
    return results


async def measure(run_one: Callable[[int], Awaitable[bool]], n: int, k: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(k)
    errors: list[str] = []

    async def one(i: int) -> bool:
        async with gate:
            try:
                return await run_one(i)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return False

    await asyncio.gather(*(one(-1 - i) for i in range(WARMUP)))
    errors.clear()
    start = time.perf_counter()
    good = sum(await asyncio.gather(*(one(i) for i in range(n))))
    seconds = time.perf_counter() - start
    return {"n": n, "completed": good, "failed": n - good, "seconds": seconds, "per_second": good / seconds,
            "first_error": errors[0] if errors else None}  # fmt: skip


def pgbench(server: PostgresServer, clients: int, seconds: int = 10) -> float:
    """Commits per second of ``pgbench -N`` (simple updates, no branch contention) on the server."""
    base = [_pg_bin("pgbench"), "-h", str(server.datadir), "-p", str(server.port), "-U", server.superuser]
    subprocess.run(_as_postgres([*base, "-i", "-q", "postgres"]), check=True, capture_output=True)
    out = subprocess.run(
        _as_postgres([*base, "-N", "-c", str(clients), "-j", "2", "-T", str(seconds), "postgres"]),
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    match = re.search(r"tps = ([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def run_peer(url: str, n: int, k: int) -> dict[str, Any]:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, PEER_REQUIREMENT, "asyncpg"], check=True, stdout=sys.stderr)
    proc = subprocess.run(
        [str(python), str(ROOT / "bench" / "_peer_store.py"), "--url", url, "--n", str(n), "--k", str(k)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"peer benchmark failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="timed instances per workload (default 2000)")
    parser.add_argument("--k", type=int, default=64, help="instances in flight (default 64)")
    parser.add_argument("--peer-k", type=int, default=16, help="peer instances in flight (default 16)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer")
    args = parser.parse_args()
    server = start_postgres(durable=True)
    try:
        app_url, peer_url = prepare(server)
        flowdeck = asyncio.run(run_flowdeck(app_url, args.n, args.k))
        ceiling = pgbench(server, clients=args.k)
        peer = None if args.no_peer else run_peer(peer_url, args.n, args.peer_k)
    finally:
        server.stop()
    ratio = {
        key: flowdeck[key]["per_second"] / peer["results"][key]["per_second"]
        for key in WORKLOADS
        if peer and peer["results"][key]["per_second"]
    }
    report = {"n": args.n, "k": args.k, "peer_k": args.peer_k, "flowdeck": flowdeck, "peer": peer,
              "ratio": ratio, "pgbench_tps": ceiling, "targets": TARGETS}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"Durable PostgreSQL (fsync, synchronous_commit on), N={args.n}, Flowdeck K={args.k}, "
              f"peer K={args.peer_k}; pgbench -N ceiling: {ceiling:,.0f} commits/s")  # fmt: skip
        print(f"{'workload':34}{'flowdeck/s':>12}{'target':>9}{'peer/s':>10}{'ratio':>9}   failed flowdeck/peer")
        for key, label in WORKLOADS.items():
            f = flowdeck[key]
            p = peer["results"][key] if peer else None
            print(f"{label:34}{f['per_second']:>12,.0f}{TARGETS[key]:>9,}"
                  f"{(format(p['per_second'], ',.1f') if p else '-'):>10}"
                  f"{(format(ratio[key], '.0f') + 'x' if key in ratio else '-'):>9}"
                  f"   {f['failed']}/{p['failed'] if p else '-'}")  # fmt: skip
            if f["first_error"]:
                print(f"    flowdeck first error: {f['first_error']}")
        if peer:
            print(f"\nPeer litestar-workflows {peer['version']}: worked around")
            for item in peer["workarounds"]:
                print(f"  - {item}")
    failed = [r["failed"] for r in flowdeck.values()]
    return 1 if any(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
