"""Redis calls of concurrent callers ride together: the SAQ queue's jobs, the API's rate checks.

Against a real Redis: each caller gets its own replies; a job enqueued in a pipeline is the job
SAQ would have enqueued (a duplicate key is refused); a worker's dequeue, mark-active and finish
through the shared pipelines move the job as SAQ's own calls do; scripts Redis forgot (a restart,
SCRIPT FLUSH) are loaded again; the sweep leaves a job just taken alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from saq import Status
from saq.utils import now as saq_now

from flowdeck_api.ratelimit import KEY_PREFIX, Rate, RedisRateLimiter
from flowdeck_runtime.pipelining import Pipelined
from flowdeck_runtime.queue import FlowdeckRedisQueue, JobSettings, SaqStepQueue, instance_job
from flowdeck_runtime.settings import WorkSettings


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_concurrent_callers_share_a_pipeline_and_each_gets_its_own_replies(redis: Redis) -> None:
    pipelined = Pipelined(redis)
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    async def incr(n: int) -> list[object]:
        def add(pipe: object) -> None:
            pipe.incrby(f"{prefix}:{n}", n)  # type: ignore[attr-defined]
            pipe.get(f"{prefix}:{n}")  # type: ignore[attr-defined]

        return await pipelined.run(add)

    replies = await asyncio.gather(*(incr(n) for n in range(1, 21)))
    assert replies == [[n, str(n).encode()] for n in range(1, 21)]

    def broken(pipe: object) -> None:
        pipe.incr(f"{prefix}:1")  # type: ignore[attr-defined]
        pipe.lpush(f"{prefix}:1", "x")  # type: ignore[attr-defined]  # WRONGTYPE

    with pytest.raises(Exception, match="WRONGTYPE"):
        await pipelined.run(broken)
    assert await incr(5) == [10, b"10"]  # the next pipeline is fine


async def test_jobs_enqueued_in_one_pipeline_are_saqs_jobs_and_a_worker_runs_them_through(
    redis_url: str, redis: Redis
) -> None:
    name = f"pipelined-{uuid.uuid4().hex[:8]}"
    queue = SaqStepQueue.from_url(redis_url, WorkSettings(queue_name=name), socket_timeout=None)
    saq_queue = queue.queue
    assert isinstance(saq_queue, FlowdeckRedisQueue)
    settings = JobSettings.from_settings(WorkSettings())
    tenant = uuid.uuid4()
    try:
        await queue.connect()
        jobs = [instance_job(tenant, uuid.uuid4(), 1, settings) for _ in range(5)]
        assert await saq_queue.enqueue_many(jobs) == [True] * 5
        again = [instance_job(tenant, job.kwargs["instance_id"], 1, settings) for job in jobs[:2]]  # type: ignore[index]
        assert await saq_queue.enqueue_many(again) == [False, False]  # same keys: duplicates
        assert await saq_queue.count("queued") == 5

        await redis.script_flush()  # Redis forgot the script: loaded again
        late = instance_job(tenant, uuid.uuid4(), 1, settings)
        assert await saq_queue.enqueue_many([late]) == [True]

        taken = await asyncio.gather(*(saq_queue.dequeue(timeout=1) for _ in range(6)))
        assert sorted(job.key for job in taken if job is not None) == sorted(j.key for j in [*jobs, late])
        first = taken[0]
        assert first is not None
        await first.update(status=Status.ACTIVE)  # sent without waiting for Redis, ahead of the job's later calls
        (payload,) = await saq_queue._coalescer().run(lambda pipe: pipe.get(first.id))
        stored = saq_queue.deserialize(payload)
        assert stored is not None and stored.status is Status.ACTIVE
        assert await saq_queue.count("active") == 6
        await asyncio.gather(*(job.finish(Status.COMPLETE, result="done") for job in taken if job is not None))
        assert await saq_queue.count("active") == 0
        assert await saq_queue.count("incomplete") == 0
        finished = await saq_queue.job(first.key)
        assert finished is not None and finished.status is Status.COMPLETE
        assert await saq_queue.dequeue(timeout=1) is None  # nothing left: SAQ's blocking wait times out
    finally:
        await queue.disconnect()


@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")  # SAQ's abort, swept jobs only
async def test_the_sweep_leaves_a_job_just_taken_alone_and_sweeps_one_whose_worker_died(
    redis_url: str, redis: Redis
) -> None:
    queue = SaqStepQueue.from_url(redis_url, WorkSettings(queue_name=f"sweep-{uuid.uuid4().hex[:8]}"))
    saq_queue = queue.queue
    assert isinstance(saq_queue, FlowdeckRedisQueue)
    saq_queue.taken_grace_seconds = 0.5
    settings = JobSettings.from_settings(WorkSettings())
    taken, dead = jobs = [instance_job(uuid.uuid4(), uuid.uuid4(), 1, settings) for _ in range(2)]
    try:
        await queue.connect()
        assert await saq_queue.enqueue_many(jobs) == [True, True]
        for _ in jobs:  # what a worker's blocking wait does: the job moves to the active list, still queued
            await redis.lmove(saq_queue._queued, saq_queue._active, "LEFT", "RIGHT")

        async def mark_taken() -> None:  # its worker marks it active a moment later, as SAQ's worker does
            await asyncio.sleep(0.1)
            taken.started = saq_now()
            taken.attempts += 1
            await taken.update(status=Status.ACTIVE)

        swept, _ = await asyncio.gather(saq_queue.sweep(abort=0.1), mark_taken())
        assert swept == [dead.id]  # SAQ's own sweep took both
        still = await saq_queue.job(taken.key)
        assert still is not None and still.status is Status.ACTIVE and still.attempts == 1
        retried = await saq_queue.job(dead.key)
        assert retried is not None and retried.status is Status.QUEUED
        assert retried.error == saq_queue.swept_error_message
        assert await saq_queue.count("active") == 1  # the swept job waits for its retry
    finally:
        await queue.disconnect()


async def test_rate_checks_ride_together_and_survive_a_script_flush(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, Rate(limit=5, period=60.0))
    key = f"test-{uuid.uuid4()}"
    waits = await asyncio.gather(*(limiter.acquire(key) for _ in range(8)))
    assert sorted(waits)[:5] == [0.0] * 5
    assert all(w > 0 for w in sorted(waits)[5:])
    await redis.script_flush()
    assert await limiter.acquire(f"test-{uuid.uuid4()}") == 0.0
    assert await redis.exists(KEY_PREFIX + key)


async def test_a_worker_whose_every_slot_waits_for_a_job_still_has_connections_to_spare(redis_url: str) -> None:
    """Each of a worker's job slots waits for its next job on a Redis connection of its own; with
    150 of them waiting, jobs are still enqueued, taken and finished (redis-py's default pool of
    100 connections refused the 101st)."""
    work = WorkSettings(queue_name=f"slots-{uuid.uuid4().hex[:8]}", concurrency=150)
    queue = SaqStepQueue.from_url(redis_url, work, socket_timeout=None)
    saq_queue = queue.queue
    assert isinstance(saq_queue, FlowdeckRedisQueue)
    settings = JobSettings.from_settings(work)
    try:
        await queue.connect()
        slots = [asyncio.ensure_future(saq_queue.dequeue(timeout=2)) for _ in range(work.concurrency)]
        await asyncio.sleep(0.3)  # every slot is in its blocking wait
        jobs = [instance_job(uuid.uuid4(), uuid.uuid4(), 1, settings) for _ in range(5)]
        assert await saq_queue.enqueue_many(jobs) == [True] * 5
        taken = [job for job in await asyncio.gather(*slots) if job is not None]
        assert sorted(job.key for job in taken) == sorted(job.key for job in jobs)
        await asyncio.gather(*(job.finish(Status.COMPLETE) for job in taken))
        assert await saq_queue.count("incomplete") == 0
    finally:
        await queue.disconnect()
