"""Configuration test: no job we enqueue relies on a SAQ default (SAQ's defaults lose work)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from saq import Job

from flowdeck_engine import ValidationError
from flowdeck_runtime.queue import RUN_INSTANCE, JobSettings, instance_job
from flowdeck_runtime.settings import WorkSettings

FRAMEWORK_SET = {
    "function",  # set by us, per job
    "kwargs",  # set by us, per job
    "key",  # set by us, per job: instance_id:seq
    "queue",  # set by Queue.enqueue
    "progress",
    "attempts",
    "completed",
    "queued",
    "started",
    "touched",
    "result",
    "error",
    "status",
    "meta",
    "worker_id",
}
"""Job fields that SAQ sets while it runs a job (or that we always pass per job)."""
POSTGRES_ONLY = {"priority", "group_key"}
"""Job fields that only SAQ's PostgreSQL queue reads (we queue on Redis)."""


def _saq_settings() -> dict[str, object]:
    """SAQ's Job fields that are settings, with their defaults."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(Job):
        if f.name in FRAMEWORK_SET or f.name in POSTGRES_ONLY:
            continue
        out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return out


def test_every_saq_job_setting_is_set_explicitly() -> None:
    # A new SAQ release that adds a job setting fails here until JobSettings sets it.
    ours = {f.name for f in dataclasses.fields(JobSettings)}
    assert set(_saq_settings()) == ours


def test_the_jobs_we_enqueue_carry_our_settings_not_saqs_defaults() -> None:
    settings = JobSettings.from_settings(WorkSettings())
    job = instance_job(uuid.uuid4(), uuid.uuid4(), 7, settings)
    for name, value in settings.fields().items():
        assert getattr(job, name) == value, name
    defaults = _saq_settings()
    # The settings whose SAQ default loses work differ from it.
    for name in ("timeout", "heartbeat", "retries", "retry_delay", "retry_backoff"):
        assert getattr(job, name) != defaults[name], name
    assert job.function == RUN_INSTANCE
    assert job.key.endswith(":7")
    assert set(job.kwargs or {}) == {"tenant_id", "instance_id", "seq"}


@pytest.mark.parametrize(
    "change",
    [{"timeout": 0}, {"heartbeat": 0}, {"heartbeat": 400}, {"retries": 1}, {"ttl": 0}],
)
def test_settings_that_lose_work_are_refused(change: dict[str, int]) -> None:
    settings = JobSettings.from_settings(WorkSettings())
    with pytest.raises(ValidationError):
        dataclasses.replace(settings, **change)


@pytest.mark.parametrize(("saqs", "ours"), [("_enqueue", "_ENQUEUE_LUA"), ("sweep", "_SWEEP_LUA")])
def test_our_redis_calls_run_saqs_own_scripts(saqs: str, ours: str) -> None:
    """FlowdeckRedisQueue.enqueue_many sends SAQ's enqueue script by EVALSHA, and its sweep
    registers SAQ's sweep script itself: if SAQ changes a script (what makes a key a duplicate,
    where a job goes, what the sweep looks at), ours must change with it."""
    import inspect

    from saq.queue.redis import RedisQueue

    from flowdeck_runtime import queue

    def lines(text: str) -> list[str]:
        return [line.strip() for line in text.strip().splitlines() if line.strip()]

    source = inspect.getsource(getattr(RedisQueue, saqs))
    script = source.split('"""')[1]
    assert lines(script) == lines(getattr(queue, ours))
