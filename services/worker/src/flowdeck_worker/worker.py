"""``flowdeck worker``: the SAQ worker that runs instances' machine steps.

SAQ's worker settings are all given here (none of its defaults is relied on). On SIGTERM (or
SIGINT) SAQ stops taking jobs and waits up to the grace period for the jobs in flight; those still
running then are cancelled, give their leases back, and go back to the queue for another worker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from saq import Worker

from flowdeck_engine import ValidationError
from flowdeck_runtime import heap
from flowdeck_runtime.queue import RUN_INSTANCE, SaqStepQueue
from flowdeck_worker.jobs import WorkerContext, run_instance
from flowdeck_worker.runner import InstanceRunner
from flowdeck_worker.services import open_services

if TYPE_CHECKING:
    import asyncio

    from flowdeck_runtime.settings import Settings
    from flowdeck_worker.services import Services

log = logging.getLogger(__name__)


class FlowdeckWorker(Worker[WorkerContext]):
    """SAQ's worker, whose upkeep loops (sweep, stats) stop at once on shutdown: only jobs in
    flight get the grace period (SAQ would wait for a sleeping upkeep loop too)."""

    _upkeep: list[asyncio.Task[None]]

    async def upkeep(self) -> list[asyncio.Task[None]]:
        """Start SAQ's upkeep loops, remembering them."""
        self._upkeep = await super().upkeep()
        return self._upkeep

    async def stop(self) -> None:
        """Stop taking jobs, end the upkeep loops, give jobs in flight the grace period."""
        for task in getattr(self, "_upkeep", []):
            task.cancel()
        await super().stop()


def build_runner(services: Services) -> InstanceRunner:
    """The runner of instances' machine steps for ``services`` (leases as the settings say)."""
    work = services.settings.work
    provider = services.tracer_provider
    return InstanceRunner(
        services.tenants,
        lease_seconds=work.lease_seconds,
        heartbeat_seconds=max(1.0, work.heartbeat_seconds / 3),
        tracer=None if provider is None else provider.get_tracer("flowdeck.worker"),
    )


def build_worker(services: Services) -> tuple[Worker[WorkerContext], InstanceRunner]:
    """The SAQ worker for ``services`` and the runner its jobs use."""
    work = services.settings.work
    runner = build_runner(services)
    if not isinstance(services.queue, SaqStepQueue):
        raise ValidationError("the SAQ worker needs the SAQ step queue (embedded mode: flowdeck_worker.embedded)")

    async def startup(ctx: WorkerContext) -> None:
        ctx["runner"] = runner

    worker = FlowdeckWorker(
        services.queue.queue,
        functions=[(RUN_INSTANCE, run_instance)],
        concurrency=work.concurrency,
        startup=startup,
        timers={"schedule": 1, "worker_info": 10, "sweep": max(1, work.heartbeat_seconds // 2), "abort": 1},
        dequeue_timeout=1.0,
        shutdown_grace_period_s=work.shutdown_grace_seconds,
        cancellation_hard_deadline_s=5.0,
        poll_interval=0.0,
        burst=False,
    )
    return worker, runner


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGTERM or SIGINT; give back every lease before returning."""
    services = open_services(settings)
    try:
        await services.queue.connect()  # SAQ: connect before Worker.start()
        worker, runner = build_worker(services)
        heap.settle()
        log.info("flowdeck worker %s taking jobs from queue %r", runner.identity, settings.work.queue_name)
        try:
            await worker.start()
        finally:
            await runner.release_all()
    finally:
        await services.close()
    log.info("flowdeck worker stopped")


__all__ = ["FlowdeckWorker", "build_runner", "build_worker", "run_worker"]
