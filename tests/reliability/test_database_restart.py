"""Scenario 5: PostgreSQL restarted at once mid-run (every backend terminated).

While it is down the API answers 503 with ``Retry-After`` (never a 500), clients retry their
starts with the same ``Idempotency-Key`` (a start cut off between claiming its key and answering
gets 409 "in progress" until the key is found abandoned), and after it is back every instance
started exactly once and completes.
The cluster is this test's own: restarting the shared one would disturb other tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e import documents
from tests.e2e.stack import Stack, wait_for
from tests.integration.conftest import Database, provision
from tests.integration.servers import PostgresServer, start_postgres
from tests.reliability.invariants import check_invariants

INSTANCES = 300


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    # Durable (fsync, synchronous commit): the test harness's usual fsync=off cluster forgets
    # commits it already acknowledged when it crashes, and "nothing lost" presumes durable ones.
    server = start_postgres(durable=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database(own_postgres: PostgresServer) -> Database:
    """The stack's database, on this test's own cluster (the shared ``stack`` fixture uses it)."""
    return provision(own_postgres.url(), "flowdeck_restart")


async def test_postgres_restarted_mid_run_answers_503_never_500_and_loses_nothing(
    own_postgres: PostgresServer, stack: Stack
) -> None:
    stack.overrides["FLOWDECK_IDEMPOTENCY_ABANDON_SECONDS"] = "2"
    stack.start_api()
    stack.start_worker()
    stack.start_scheduler()
    tenant = await stack.new_tenant()
    admin = stack.token(tenant, "admin", "admin")
    answers: Counter[int] = Counter()
    history: dict[str, list[tuple[int, str]]] = {}
    started: set[str] = set()
    async with httpx.AsyncClient(timeout=30) as client:
        upload = await client.post(f"{stack.base}/v1/definitions", json=documents.machines(count=3), headers=admin)
        assert upload.status_code == 201, upload.text
        gate = asyncio.Semaphore(8)

        async def start() -> None:
            key = {"idempotency-key": uuid.uuid4().hex}
            trail = history.setdefault(key["idempotency-key"], [])
            while True:
                async with gate:
                    response = await client.post(
                        f"{stack.base}/v1/instances", json={"workflow": "three-machines"}, headers={**admin, **key}
                    )
                answers[response.status_code] += 1
                trail.append((response.status_code, response.json().get("id") or response.json().get("code")))
                if response.status_code not in {409, 503}:
                    break
                code = response.json()["code"]
                assert code in {"unavailable", "idempotency_in_progress"} and response.headers["retry-after"], code
                await asyncio.sleep(0.2)
            assert response.status_code in {200, 201}, response.text
            started.add(response.json()["id"])

        starts = [asyncio.create_task(start()) for _ in range(INSTANCES)]
        await wait_for(lambda: asyncio.sleep(0, len(started) >= INSTANCES // 3), 60, what="a third started")
        await asyncio.to_thread(own_postgres.restart)
        await asyncio.gather(*starts)
        assert not [status for status in answers if status >= 500 and status != 503], answers

        async def all_completed() -> bool:
            rows = await stack.tenant_sql(tenant, "SELECT count(*) FROM workflow_instances WHERE status <> 'completed'")
            return bool(rows[0][0] == 0)

        await wait_for(all_completed, 90, interval=0.5, what="every instance to complete")
    try:
        await check_invariants(stack, tenant, started)
    except AssertionError:
        print({k: v for k, v in history.items() if len(v) > 1})
        raise
    print(f"answers while PostgreSQL restarted: {dict(answers)}")
