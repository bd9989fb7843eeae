"""Reliability scenarios of docs/reliability.md with real processes, each ending with the invariant check.

4. a worker paused (SIGSTOP) past its lease, then resumed: its late commit changes nothing;
6. the queue's Redis data wiped mid-run: the reconciler recovers every instance;
7. graceful shutdown (SIGTERM): in-flight steps finish or give their leases back, nothing aborted;
8. timers due while the scheduler is down fire once after it starts (two schedulers at once).
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import httpx
from redis.asyncio import Redis

from tests.e2e import documents
from tests.e2e.stack import Stack, wait_for
from tests.reliability.invariants import check_invariants


async def _tenant_with(stack: Stack, *docs: dict[str, object]) -> tuple[uuid.UUID, dict[str, str]]:
    tenant = await stack.new_tenant()
    admin = stack.token(tenant, "admin", "admin")
    async with httpx.AsyncClient(timeout=10) as client:
        for doc in docs:
            assert (await client.post(f"{stack.base}/v1/definitions", json=doc, headers=admin)).status_code == 201
    return tenant, admin


async def _start_many(stack: Stack, admin: dict[str, str], workflow: str, count: int) -> set[str]:
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> str:
            async with gate:
                response = await client.post(f"{stack.base}/v1/instances", json={"workflow": workflow}, headers=admin)
            assert response.status_code == 201, response.text
            instance_id: str = response.json()["id"]
            return instance_id

        return set(await asyncio.gather(*(one() for _ in range(count))))


async def _leased(stack: Stack, tenant: uuid.UUID) -> int:
    rows = await stack.tenant_sql(tenant, "SELECT count(*) FROM workflow_pending_work WHERE lease_owner IS NOT NULL")
    count: int = rows[0][0]
    return count


async def _all_done(stack: Stack, tenant: uuid.UUID, seconds: float = 40) -> None:
    async def done() -> bool:
        rows = await stack.tenant_sql(
            tenant, "SELECT count(*) FROM workflow_instances WHERE status NOT IN ('completed', 'failed')"
        )
        return bool(rows[0][0] == 0)

    await wait_for(done, seconds, interval=0.3, what="every instance to finish")


async def test_a_paused_worker_resumed_after_its_lease_was_taken_over_commits_nothing(stack: Stack) -> None:
    stack.start_api()
    tenant, admin = await _tenant_with(stack, documents.machines(count=5))
    started = await _start_many(stack, admin, "three-machines", 80)
    stack.start_scheduler()
    paused = stack.start_worker()
    await wait_for(lambda: _leased(stack, tenant), 30, interval=0.02, what="leases")
    paused.signal(signal.SIGSTOP)
    try:
        stack.start_worker()
        await _all_done(stack, tenant)
    finally:
        paused.signal(signal.SIGCONT)
    await asyncio.sleep(3)  # the resumed worker's late commits are refused
    await check_invariants(stack, tenant, started)
    assert paused.alive  # it went on working afterwards


async def test_the_queue_wiped_in_redis_mid_run_is_recovered_by_the_reconciler(stack: Stack) -> None:
    stack.start_api()
    tenant, admin = await _tenant_with(stack, documents.machines(count=3), documents.parallel())
    started = await _start_many(stack, admin, "three-machines", 60) | await _start_many(stack, admin, "fan-out", 20)
    redis = Redis.from_url(stack.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(f"saq:*{stack.queue}:*")]
        assert keys
        await redis.delete(*keys)  # every job of the queue is gone
    finally:
        await redis.aclose()
    stack.start_worker()
    stack.start_scheduler()
    await _all_done(stack, tenant)
    await check_invariants(stack, tenant, started)


async def test_sigterm_finishes_or_gives_back_in_flight_work_and_aborts_nothing(stack: Stack) -> None:
    stack.start_api()
    tenant, admin = await _tenant_with(stack, documents.machines(count=5))
    started = await _start_many(stack, admin, "three-machines", 150)
    worker = stack.start_worker()
    await wait_for(lambda: _leased(stack, tenant), 30, interval=0.02, what="leases")
    assert worker.stop(timeout=15) == 0
    assert await _leased(stack, tenant) == 0  # finished, or given back
    redis = Redis.from_url(stack.redis_url)
    try:
        statuses = [json.loads(await redis.get(k) or b"{}").get("status") async for k in redis.scan_iter(
            f"saq:job:{stack.queue}:*")]  # fmt: skip
    finally:
        await redis.aclose()
    assert "aborted" not in statuses and "failed" not in statuses
    stack.start_worker()
    stack.start_scheduler()
    await _all_done(stack, tenant)
    await check_invariants(stack, tenant, started)


async def test_timers_due_while_the_scheduler_was_down_fire_once_after_it_starts(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    tenant, admin = await _tenant_with(stack, documents.timer(1))
    started = await _start_many(stack, admin, "timed", 40)

    async def waiting() -> bool:
        rows = await stack.tenant_sql(tenant, "SELECT count(*) FROM workflow_timers")
        return bool(rows[0][0] == 40)

    await wait_for(waiting, 20, what="every timer to be set")
    await asyncio.sleep(1.5)  # every timer is due; no scheduler runs
    stack.start_scheduler()
    stack.start_scheduler()  # two of them: each timer is claimed by one
    await _all_done(stack, tenant)
    await check_invariants(stack, tenant, started)
    assert await stack.tenant_sql(tenant, "SELECT 1 FROM workflow_timers") == []
