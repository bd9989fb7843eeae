"""Scenario 1: the worker SIGKILLed several times while 500 instances are in flight: all complete."""

from __future__ import annotations

import asyncio
import os
import random
import time

import httpx

from tests.e2e import documents
from tests.e2e.stack import Stack, wait_for
from tests.reliability.invariants import check_invariants

INSTANCES = 500
KILLS = 4


async def test_worker_sigkilled_repeatedly_while_instances_are_in_flight(stack: Stack) -> None:
    seed = int(os.environ.get("FLOWDECK_SEED", time.time_ns() % 1_000_000))
    print(f"seed: {seed}")
    rng = random.Random(seed)
    stack.start_api()
    tenant = await stack.new_tenant()
    admin = stack.token(tenant, "admin", "admin")
    async with httpx.AsyncClient(timeout=30) as client:
        for doc in (documents.machines(count=5), documents.parallel()):
            assert (await client.post(f"{stack.base}/v1/definitions", json=doc, headers=admin)).status_code == 201
        stack.start_scheduler()
        started: set[str] = set()
        abandoned: list[int] = []
        gate = asyncio.Semaphore(32)

        async def start(i: int) -> None:
            workflow = "fan-out" if i % 4 == 0 else "three-machines"
            async with gate:
                response = await client.post(f"{stack.base}/v1/instances", json={"workflow": workflow}, headers=admin)
            assert response.status_code == 201, response.text
            started.add(response.json()["id"])

        # Every instance in flight first (their jobs wait in Redis), then a worker that is killed
        # each time it holds leases, mid-run.
        await asyncio.gather(*(start(i) for i in range(INSTANCES)))

        async def leased() -> int:
            rows = await stack.tenant_sql(
                tenant, "SELECT count(*) FROM workflow_pending_work WHERE lease_owner IS NOT NULL"
            )
            count: int = rows[0][0]
            return count

        for _ in range(KILLS):
            worker = stack.start_worker()
            await wait_for(leased, 30, interval=0.02, what="the worker to take leases")
            await asyncio.sleep(rng.uniform(0.0, 0.1))
            abandoned.append(await leased())
            worker.kill()  # SIGKILL: no chance to give anything back
        stack.start_worker()

        async def all_done() -> bool:
            rows = await stack.tenant_sql(
                tenant, "SELECT count(*) FROM workflow_instances WHERE status NOT IN ('completed', 'failed')"
            )
            return rows[0][0] == 0

        await wait_for(all_done, 60, interval=0.5, what=f"every instance to complete (seed {seed})")
    print(f"leases held at each kill: {abandoned}")
    assert len(started) == INSTANCES
    assert sum(abandoned) > 0
    await check_invariants(stack, tenant, started)
