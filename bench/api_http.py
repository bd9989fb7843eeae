"""HTTP benchmark of the API: a real server process, a real PostgreSQL, load from a second process.

Measures starts per second with p50/p99 latency (an expense claim small enough to be approved by
machine steps, all run inside the request), task claim and complete latency (p50/p99, and of the
pair), and inbox latency with 1,000,000 tasks across 100 tenants for a user in 50 groups.
Targets (issue 5): claim+complete p99 < 20 ms, inbox p99 < 10 ms.

Run with ``make bench`` or ``.venv/bin/python bench/api_http.py [--tasks 1000000] [--tenants 100]``.
The PostgreSQL it starts is durable (fsync and synchronous_commit on); the API runs as the
application role, under row-level security; there is no Redis (the in-process limiter). The load
comes from the light keep-alive client of ``bench/_loadgen.py``; a latency is from the request's
first byte written to the answer's last byte read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _loadgen import Connection  # noqa: E402

EXPENSE = (ROOT / "examples/documents/expense-approval.yaml").read_bytes()
GROUPS = [f"group-{i:03d}" for i in range(200)]
MY_GROUPS = GROUPS[:50]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def line(label: str, samples: list[float]) -> str:
    return f"  {label:<28} n={len(samples):>6}  p50 {pct(samples, 0.5):7.2f} ms  p99 {pct(samples, 0.99):7.2f} ms"


# --- the load process --------------------------------------------------------------------------------


async def load(
    base: str, tokens: dict[str, str], starts: int, tasks: int, inbox: int, concurrency: int
) -> dict[str, Any]:
    """The measurements, from ``concurrency`` keep-alive connections of the light client
    (``bench/_loadgen.py``: httpx would add milliseconds of its own CPU to every latency here)."""
    host, port = base.removeprefix("http://").split(":")
    connections = [await Connection.open(host, int(port)) for _ in range(concurrency)]

    def auth(who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {tokens[who]}"}

    async def timed(conn: Connection, method: str, url: str, headers: dict[str, str], body: Any = None) -> Any:
        t = time.perf_counter()
        status, raw = await conn.request(method, url, body, headers)
        elapsed = time.perf_counter() - t  # until the whole answer arrived; parsing it is the client's time
        if status >= 400:
            raise RuntimeError(f"{method} {url}: {status} {raw[:200]!r}")
        return elapsed, json.loads(raw)

    async def pool(n: int, job: Any) -> list[Any]:
        queue = list(range(n))
        out: list[Any] = []

        async def worker(conn: Connection) -> None:
            while queue:
                i = queue.pop()
                out.append(await job(conn, i))

        await asyncio.gather(*(worker(conn) for conn in connections))
        return out

    try:
        small = {"workflow": "expense-approval", "input": {"amount": 5}}
        start = lambda conn, i: timed(conn, "POST", "/v1/instances", auth("starter"), small)  # noqa: E731
        await pool(50, start)  # warm up
        t0 = time.perf_counter()
        start_times = [r[0] for r in await pool(starts, start)]
        start_rate = starts / (time.perf_counter() - t0)

        big = {"workflow": "expense-approval", "input": {"amount": 900, "manager_id": "bench-manager"}}
        await pool(tasks, lambda conn, i: timed(conn, "POST", "/v1/instances", auth("starter"), big))
        pending: list[dict[str, Any]] = []
        cursor = None
        while True:
            url = "/v1/tasks?limit=200" + (f"&cursor={cursor}" if cursor else "")
            _, page = await timed(connections[0], "GET", url, auth("manager"))
            pending.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break

        async def claim_complete(conn: Connection, i: int) -> tuple[float, float]:
            task = pending[i]
            claim, _ = await timed(conn, "POST", f"/v1/tasks/{task['id']}/claim", auth("manager"))
            done, _ = await timed(
                conn, "POST", f"/v1/tasks/{task['id']}/complete", auth("manager"), {"data": {"approved": True}}
            )
            return claim, done

        pairs = await pool(len(pending), claim_complete)
        inbox_times = [
            r[0] for r in await pool(inbox, lambda conn, i: timed(conn, "GET", "/v1/tasks?limit=50", auth("inbox")))
        ]
    finally:
        for conn in connections:
            conn.close()
    return {
        "start_rate": start_rate,
        "starts": start_times,
        "claims": [c for c, _ in pairs],
        "completes": [d for _, d in pairs],
        "pairs": [c + d for c, d in pairs],
        "inbox": inbox_times,
    }


# --- the driver --------------------------------------------------------------------------------------


def seed_sql(tenants: list[uuid.UUID], per_tenant: int) -> str:
    """Instances and tasks for the inbox: ``per_tenant`` tasks per tenant, 100 per instance, each
    routed to one group, with their inbox rows (as the writer makes them)."""
    ids = ",".join(f"'{t}'::uuid" for t in tenants)
    groups = "ARRAY[" + ",".join(f"'{g}'" for g in GROUPS) + "]"
    instances = max(1, per_tenant // 100)
    return f"""
    INSERT INTO workflow_instances (id, tenant_id, definition_id, workflow_name, workflow_version, status,
        current_steps, context_data, metadata, started_at, version, kernel_state, created_at, updated_at)
    SELECT gen_random_uuid(), t.id, d.id, 'expense-approval', '1.0.0', 'waiting', '[]', '{{}}', '{{}}', now(), 1,
           '{{}}', now(), now()
    FROM unnest(ARRAY[{ids}]) AS t(id) JOIN workflow_definitions d ON d.tenant_id = t.id,
         generate_series(1, {instances});
    INSERT INTO workflow_human_tasks (id, tenant_id, instance_id, workflow_name, step_name, title,
        candidate_groups, assignee_group, status, due_at, created_at, updated_at)
    SELECT gen_random_uuid(), i.tenant_id, i.id, 'expense-approval', 'step-' || n, 'Seeded task',
           jsonb_build_array(({groups})[1 + (abs(hashtext(i.id::text || n)) % 200)]),
           ({groups})[1 + (abs(hashtext(i.id::text || n)) % 200)], 'pending',
           now() + (abs(hashtext(n::text || i.id::text)) % 100000) * interval '1 minute', now(), now()
    FROM workflow_instances i, generate_series(1, 100) AS n WHERE i.tenant_id IN ({ids});
    INSERT INTO workflow_task_candidates (tenant_id, task_id, principal, status, due_key)
    SELECT tenant_id, id, 'g:' || assignee_group, status, due_at FROM workflow_human_tasks
    WHERE title = 'Seeded task';
    ANALYZE;
    """


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="seeded inbox tasks in all")
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--starts", type=int, default=2000)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--inbox", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="only ANALYZE the seeded rows (no VACUUM, no CHECKPOINT before measuring)",
    )
    parser.add_argument("--load", help=argparse.SUPPRESS)  # the load process: a JSON file of its inputs
    args = parser.parse_args()
    if args.load:
        spec = json.loads(Path(args.load).read_text())
        import uvloop  # the load process takes as little of the two cores as it can

        print(json.dumps(uvloop.run(load(**spec))))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    import httpx

    from flowdeck_api.auth import mint_token
    from tests.integration.conftest import provision
    from tests.integration.servers import free_port, start_postgres

    home = Path(tempfile.mkdtemp(prefix="flowdeck-bench-"))
    pg = start_postgres(durable=True)
    api: subprocess.Popen[bytes] | None = None
    try:
        database = provision(pg.url(), "bench")  # owner, migrated, the app role may log in
        tenants = [uuid.uuid4() for _ in range(args.tenants)]
        values = ",".join(f"('{t}', 'bench-{i}', 'Bench {i}', 'active', now(), now())" for i, t in enumerate(tenants))
        pg.psql(f"INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES {values};", "bench")

        port = free_port()
        api_env = {
            **os.environ,
            "FLOWDECK_MODE": "production",
            "FLOWDECK_DATABASE_URL": database.app_url,
            "FLOWDECK_HOME": str(home),
            "FLOWDECK_STARTS_PER_MINUTE": "10000000",
            "FLOWDECK_MAX_RUNNING_INSTANCES": "100000000",
        }
        api_env.pop("FLOWDECK_REDIS_URL", None)
        api = subprocess.Popen(
            [str(ROOT / ".venv/bin/flowdeck"), "api", "--port", str(port), "--log-level", "warning"], env=api_env
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/v1/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        secret = (home / "dev-secret").read_text().strip()

        def token(tenant: uuid.UUID, sub: str, role: str, groups: list[str] = ()) -> str:  # type: ignore[assignment]
            return mint_token(
                secret,
                issuer="flowdeck-dev",
                audience="flowdeck",
                tenant_id=tenant,
                subject=sub,
                roles=[role],
                groups=groups,
            )

        for tenant in tenants:
            response = httpx.post(
                f"{base}/v1/definitions",
                content=EXPENSE,
                headers={
                    "authorization": f"Bearer {token(tenant, 'root', 'admin')}",
                    "content-type": "application/yaml",
                },
            )
            assert response.status_code == 201, response.text
        started = time.perf_counter()
        pg.psql(seed_sql(tenants, args.tasks // args.tenants), "bench")
        if not args.no_vacuum:
            # A steady state, not the aftermath of a bulk load: autovacuum's first pass over the
            # fresh rows and the checkpoint that flushes them would otherwise land mid-measurement
            # (the commits of claim and complete then wait behind their I/O).
            pg.psql("VACUUM ANALYZE;", "bench")
            pg.psql("CHECKPOINT;", "bench")
        seeded = time.perf_counter() - started
        count = pg.psql("SELECT count(*) FROM workflow_human_tasks;", "bench").strip()

        spec = {
            "base": base,
            "tokens": {
                "starter": token(tenants[0], "starter", "member"),
                "manager": token(tenants[0], "bench-manager", "member", ["managers"]),
                "inbox": token(tenants[1], "inbox-user", "member", MY_GROUPS),
            },
            "starts": args.starts,
            "tasks": args.claims,
            "inbox": args.inbox,
            "concurrency": args.concurrency,
        }
        spec_file = home / "load.json"
        spec_file.write_text(json.dumps(spec))
        out = subprocess.run([sys.executable, __file__, "--load", str(spec_file)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"API over HTTP: 1 server process (uvicorn), load from a second process, concurrency {args.concurrency}")
        print(
            f"  seeded {count.split()[-1] if count else '?'} tasks across {args.tenants} tenants in {seeded:.1f} s;"
            f" inbox user in {len(MY_GROUPS)} groups"
        )
        print(f"  starts/s                     {result['start_rate']:,.0f}")
        print(line("start latency", result["starts"]))
        print(line("claim", result["claims"]))
        print(line("complete", result["completes"]))
        print(line("claim + complete", result["pairs"]))
        print(line("inbox (limit 50)", result["inbox"]))
        print("  targets: claim+complete p99 < 20 ms, inbox p99 < 10 ms")
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=10)
        pg.stop()


if __name__ == "__main__":
    main()
