"""SAQ dispatch: the engine's :class:`~flowdeck_engine.ports.StepQueue` on a SAQ queue in Redis.

SAQ only wakes workers: PostgreSQL holds every instance's state and its pending work, and a job
says no more than "resume instance X of tenant T, whose state is at sequence N". So a job lost in
Redis costs a re-send by the scheduler's reconciler, and a duplicate costs a no-op. One job per
instance (not per step): its worker runs every consecutive machine step that is due.

SAQ's job defaults lose work after a crash (a swept job with one attempt is marked aborted, never
retried), so every job carries all of :class:`JobSettings` explicitly; a configuration test fails
the build when SAQ grows a job setting that this module does not set.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import propagate
from redis.asyncio import Redis
from redis.exceptions import RedisError
from saq import Job, Queue, Status
from saq.queue.redis import RedisQueue
from saq.utils import now as saq_now

from flowdeck_engine import ValidationError
from flowdeck_runtime.pipelining import Pipelined, with_script
from flowdeck_runtime.telemetry import TRACE_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from redis.asyncio.client import Pipeline
    from redis.commands.core import AsyncScript

    from flowdeck_engine import WorkflowInstance
    from flowdeck_runtime.settings import WorkSettings

log = logging.getLogger(__name__)

RUN_INSTANCE: Final = "run_instance"
"""The worker's job function: ``run_instance(ctx, *, tenant_id, instance_id, seq)``."""


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Every setting of a SAQ job, set explicitly (SAQ's defaults are never relied on).

    ``timeout`` bounds one run of a job (0 would disable it: never). ``heartbeat``: the worker
    beats while a job runs, so a job whose worker died is swept after ``heartbeat`` seconds, not
    after ``timeout``. ``retries`` counts attempts (SAQ's "retries" is the attempt limit);
    ``retry_delay`` and ``retry_backoff`` space them. ``ttl`` keeps a finished job's record that
    long (a finished key never blocks a later enqueue of the same key). ``scheduled`` 0 is "now".
    """

    timeout: int
    heartbeat: int
    retries: int
    retry_delay: float
    retry_backoff: bool | float
    ttl: int
    scheduled: int = 0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValidationError("a job timeout must be positive (0 disables it)")
        if self.heartbeat <= 0 or self.heartbeat >= self.timeout:
            raise ValidationError("a job heartbeat must be positive and shorter than its timeout")
        if self.retries < 2:
            raise ValidationError("a job needs at least 2 attempts: a swept single-attempt job is lost")
        if self.ttl <= 0:
            raise ValidationError("a job ttl must be positive (0 keeps finished jobs forever)")

    @classmethod
    def from_settings(cls, work: WorkSettings) -> JobSettings:
        """The job settings for the work settings ``work``."""
        return cls(
            timeout=work.job_timeout_seconds,
            heartbeat=work.heartbeat_seconds,
            retries=work.retries,
            retry_delay=1.0,
            retry_backoff=30.0,
            ttl=600,
        )

    def fields(self) -> dict[str, Any]:
        """The settings as SAQ ``Job`` keyword arguments."""
        return asdict(self)


_ENQUEUE_LUA = """
if not redis.call('ZSCORE', KEYS[1], KEYS[2]) and redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('SET', KEYS[2], ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
    if ARGV[2] == '0' then redis.call('RPUSH', KEYS[3], KEYS[2]) end
    return 1
else
    return nil
end
"""
"""SAQ's own enqueue script (``RedisQueue._enqueue``): a job is queued unless its key is queued,
running or being aborted. A test checks that SAQ's script is still this one."""


_TAKE_LUA = """
local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not id then return nil end
return {id, redis.call('GET', id)}
"""
"""The next queued job, moved to the active list as SAQ's dequeue moves it, and its payload: one
round trip instead of two. Sent as EVAL (Redis caches it by its hash): no script to lose."""


_SWEEP_LUA = """
local id_jobs = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SETEX', KEYS[1], ARGV[1], 1)
    for i, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
        id_jobs[i] = {v, redis.call('GET', v)}
    end
end
return id_jobs
"""
"""SAQ's sweep script (``RedisQueue.sweep``): under the sweep lock, the active list's jobs with
their payloads. A test checks that SAQ's script is still this one."""


class FlowdeckRedisQueue(RedisQueue):
    """SAQ's Redis queue, lighter per job.

    - :meth:`enqueue_many`: many jobs in one round trip.
    - A worker's Redis calls for its jobs (take the next job, mark it active, finish it) ride
      together with those of its other jobs in flight (one pipeline per batch).
    - Job changes are not published: nothing in Flowdeck waits on a job's outcome (PostgreSQL
      holds the work), and SAQ's sweep, the one waiter, polls instead (:meth:`listen`).
    - The sweep leaves alone the jobs a worker has just taken (:meth:`sweep`).
    """

    _ops: Pipelined | None = None
    listen = Queue.listen  # polling: job changes are not published
    taken_grace_seconds: float = 1.0
    """How long the sweep gives a job that it finds in the active list still queued to be marked active."""

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        """SAQ's sweep, without the jobs a worker has just taken.

        SAQ aborts and retries every job in the active list whose status is not ``active``. A job
        that a worker has just moved there (its blocking wait takes a job by moving it) and not
        yet marked active is such a job for a moment: at 500 instances/s about four healthy jobs
        a minute were aborted and run again (the fenced lease kept them from running twice). The
        jobs the sweep finds still queued are looked at again ``taken_grace_seconds`` later; it
        sweeps those still in the active list and still queued (their worker died or lost Redis
        before marking them).
        """
        if self._cleanup_script is None:
            script = self.redis.register_script(_SWEEP_LUA)
            self._cleanup_script = _SecondLook(self, script)  # type: ignore[assignment]  # called as SAQ calls it
        return await super().sweep(lock, abort)

    def _coalescer(self) -> Pipelined:
        if self._ops is None:
            self._ops = Pipelined(self.redis, transaction=True)
        return self._ops

    async def notify(self, job: Job) -> None:
        """Job changes are not published (see the class docs)."""

    async def update(self, job: Job, **kwargs: Any) -> None:
        """Store the job's changes; with a ``status`` no read is needed, so no copy either.

        Marking a job active (what a worker does before it runs the job) does not wait for Redis:
        the job's lease in PostgreSQL, not its status in Redis, says who runs it, and the job's
        later calls (its finish) go out after this one through the same pipelines."""
        if "status" not in kwargs:
            await super().update(job, **kwargs)
            return
        job.touched = saq_now()
        for name, value in kwargs.items():
            if hasattr(job, name):
                setattr(job, name, value)
        payload = self.serialize(job)
        sent = self._coalescer().send(lambda pipe: pipe.set(job.id, payload))
        if kwargs["status"] is Status.ACTIVE:
            sent.add_done_callback(_log_failure)
            return
        await sent

    async def _finish(self, job: Job, status: Status, *, result: Any = None, error: str | None = None) -> None:
        payload = self.serialize(job)

        def add(pipe: Pipeline) -> None:
            pipe.lrem(self._active, 1, job.id)
            pipe.zrem(self._incomplete, job.id)
            if job.ttl > 0:
                pipe.set(job.id, payload, ex=job.ttl)
            elif job.ttl == 0:
                pipe.set(job.id, payload)
            else:
                pipe.delete(job.id)

        await self._coalescer().run(add)

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109 (SAQ's signature)
        """The next job: taken with the other jobs' calls while there are jobs waiting, else by
        SAQ's blocking wait."""
        if await self.version() < (6, 2, 0):
            return await super().dequeue(timeout, poll_interval)
        (taken,) = await self._coalescer().run(lambda pipe: pipe.eval(_TAKE_LUA, 2, self._queued, self._active))
        if taken:
            return self.deserialize(taken[1])
        job_id = await self.redis.blmove(self._queued, self._active, timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]
        if job_id is None:
            return None
        (payload,) = await self._coalescer().run(lambda pipe: pipe.get(job_id))
        return self.deserialize(payload)

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[bool]:
        """Enqueue ``jobs`` as :meth:`enqueue` would, in one pipeline; per job, whether it was
        enqueued (False: a job with its key is queued or running already)."""
        if not jobs:
            return []
        for job in jobs:
            job.queue = self
            job.queued = saq_now()
            job.status = Status.QUEUED
            await self._before_enqueue(job)

        async def send(sha: str) -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for job in jobs:
                args = (self._incomplete, job.id, self._queued, job.abort_id, self.serialize(job), job.scheduled)
                pipe.evalsha(sha, 4, *args)
            return await pipe.execute()

        return [bool(result) for result in await with_script(self.redis, _ENQUEUE_LUA, send)]


class _SecondLook:
    """SAQ's sweep script, then a second look at the jobs it found still queued (see
    :meth:`FlowdeckRedisQueue.sweep`): called as SAQ calls the script, returning what it returns."""

    def __init__(self, queue: FlowdeckRedisQueue, script: AsyncScript) -> None:
        self.queue = queue
        self.script = script

    async def __call__(self, keys: list[str], args: list[Any], client: Redis) -> list[list[Any]]:
        id_jobs: list[list[Any]] = await self.script(keys=keys, args=args, client=client)
        queued = [job_id for job_id, raw in id_jobs if raw is not None and self._queued(raw)]
        if not queued:
            return id_jobs
        await asyncio.sleep(self.queue.taken_grace_seconds)
        active = set(await client.lrange(keys[1], 0, -1))
        now = dict(zip(queued, await client.mget(queued), strict=True))
        return [[job_id, now.get(job_id, raw)] for job_id, raw in id_jobs if job_id not in now or job_id in active]

    def _queued(self, raw: bytes) -> bool:
        job = self.queue.deserialize(raw)
        return job is not None and job.status is Status.QUEUED


def _log_failure(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled() and (exc := sent.exception()) is not None:
        log.warning("marking a job active in Redis failed (%s); the job runs on", type(exc).__name__)


def instance_job_key(instance_id: UUID | str, seq: int) -> str:
    """The job key of an instance at sequence ``seq``: a duplicate enqueue of it is a no-op."""
    return f"{instance_id}:{seq}"


def instance_job(
    tenant_id: UUID | str,
    instance_id: UUID | str,
    seq: int,
    settings: JobSettings,
    *,
    key: str | None = None,
    trace: dict[str, str] | None = None,
) -> Job:
    """The job that asks a worker to resume ``instance_id`` of ``tenant_id`` at ``seq``.

    ``trace`` is the W3C trace context of the call that made the steps due (``traceparent``, ...):
    the worker's span for the job is its child.
    """
    kwargs: dict[str, Any] = {"tenant_id": str(tenant_id), "instance_id": str(instance_id), "seq": int(seq)}
    if trace:
        kwargs["trace"] = dict(trace)
    return Job(function=RUN_INSTANCE, kwargs=kwargs, key=key or instance_job_key(instance_id, seq), **settings.fields())


def current_trace() -> dict[str, str]:
    """The current OpenTelemetry context as W3C headers (empty when no span is recording)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def job_trace(instance: WorkflowInstance) -> dict[str, str]:
    """The trace an instance's job carries: the one its start stored (``workflow.start``, a child of
    the request that started it; the same whichever task commits and sends the job, a batch's
    included), else the current one."""
    carrier = instance.context.metadata.get(TRACE_KEY)
    return carrier if isinstance(carrier, dict) else current_trace()


SPARE_CONNECTIONS = 32
"""Redis connections beyond one per job slot: pipelines, SAQ's upkeep and sweep, enqueues."""


class SaqStepQueue:
    """The engine's step queue on SAQ: one job per instance whose machine steps are due.

    The engine calls :meth:`enqueue` only after the change that made the steps due committed
    (so the worker never loads a state older than the one that asked for it).
    """

    def __init__(self, queue: Queue, settings: JobSettings) -> None:
        self.queue = queue
        self.settings = settings
        self._connected = False
        saq_log = logging.getLogger("saq")
        if saq_log.level == logging.NOTSET:  # SAQ logs every job at INFO: noise (and CPU) at our volume
            saq_log.setLevel(logging.WARNING)

    @classmethod
    def from_url(cls, url: str, work: WorkSettings, *, socket_timeout: float | None = 2.0) -> SaqStepQueue:
        """A step queue on the Redis at ``url`` (it connects on first use).

        ``socket_timeout`` bounds every Redis call, so a Redis that hangs cannot hold up an API
        request (its change is committed already; the reconciler re-sends the job). Workers pass
        None: their blocking dequeue and job updates have their own timeouts.

        The connection pool holds one connection for each of a worker's ``work.concurrency`` jobs
        in flight, since each one waits for its next job on a connection of its own, plus
        :data:`SPARE_CONNECTIONS` (redis-py's default of 100 stalled a worker of concurrency 128:
        its slots took every connection and its upkeep and pipelines failed).
        """
        redis = Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            max_connections=work.concurrency + SPARE_CONNECTIONS,
        )
        return cls(FlowdeckRedisQueue(redis, name=work.queue_name), JobSettings.from_settings(work))

    async def connect(self) -> None:
        """Connect the queue (idempotent)."""
        if not self._connected:
            await self.queue.connect()
            self._connected = True

    async def disconnect(self) -> None:
        """Close the queue's connections (nothing to do when it never connected)."""
        if self._connected:
            self._connected = False
            try:
                await self.queue.disconnect()
            except (RedisError, OSError):
                log.warning("the step queue's Redis did not answer while closing")

    async def enqueue(self, instance: WorkflowInstance, steps: list[str]) -> None:
        """Ask a worker to resume ``instance`` (its ``steps`` are due)."""
        await self.enqueue_many([(instance, steps)])

    async def enqueue_many(self, due: Sequence[tuple[WorkflowInstance, list[str]]]) -> None:
        """Ask workers to resume each instance of ``due`` (whose steps are due), in one round trip
        to Redis when the queue can."""
        await self.connect()
        jobs = []
        for instance, _ in due:
            if instance.tenant_id is None:
                raise ValidationError(f"instance {instance.id} has no tenant")
            trace = job_trace(instance)
            jobs.append(instance_job(instance.tenant_id, instance.id, instance.state.seq, self.settings, trace=trace))
        if isinstance(self.queue, FlowdeckRedisQueue):
            await self.queue.enqueue_many(jobs)
            return
        for job in jobs:
            await self.queue.enqueue(job)

    async def enqueue_instance(self, tenant_id: UUID | str, instance_id: UUID | str, seq: int) -> bool:
        """Enqueue the job for ``instance_id`` at ``seq``; False when that job is already waiting."""
        await self.connect()
        job = await self.queue.enqueue(instance_job(tenant_id, instance_id, seq, self.settings, trace=current_trace()))
        return job is not None

    async def resend(self, tenant_id: UUID | str, instance_id: UUID | str, seq: int) -> str:
        """Re-send the job of an instance whose due work no worker is on (the reconciler's call).

        ``sent``: enqueued under its key. ``waiting``: a live job with that key is queued or
        running. ``replaced``: the job with that key is stuck on a dead worker (no heartbeat; SAQ
        sweeps it only later), so a job under a key of its own is sent now; whichever runs second
        finds nothing due or the lease taken, and does nothing.
        """
        await self.connect()
        key = instance_job_key(instance_id, seq)
        if await self.queue.enqueue(instance_job(tenant_id, instance_id, seq, self.settings)) is not None:
            return "sent"
        current = await self.queue.job(key)
        if current is not None and not current.stuck and current.status is not Status.ABORTING:
            return "waiting"
        again = instance_job(tenant_id, instance_id, seq, self.settings, key=f"{key}:{uuid.uuid4().hex[:12]}")
        await self.queue.enqueue(again)
        log.info("job %s is stuck on a dead worker: sent %s", key, again.key)
        return "replaced"


__all__ = [
    "RUN_INSTANCE",
    "FlowdeckRedisQueue",
    "JobSettings",
    "SaqStepQueue",
    "current_trace",
    "instance_job",
    "instance_job_key",
    "job_trace",
]
