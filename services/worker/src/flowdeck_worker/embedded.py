"""The worker and the scheduler inside another process: the embedded mode (``make run``).

The same code as ``flowdeck worker`` and ``flowdeck scheduler``: jobs run through
:class:`~flowdeck_worker.runner.InstanceRunner` (leases, fencing, one commit per run of machine
steps), and :class:`~flowdeck_worker.scheduler.Scheduler` fires timers, reminders and escalations,
delivers outbound webhooks and re-sends lost work. Only the queue differs: an in-process
:class:`~flowdeck_runtime.inprocess.InProcessQueue` in place of SAQ and Redis. A job that fails
is logged and left to the reconciler, as a job that exhausted its SAQ attempts would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from flowdeck_engine import ValidationError
from flowdeck_runtime.inprocess import InProcessQueue
from flowdeck_worker.scheduler import Scheduler
from flowdeck_worker.worker import build_runner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowdeck_worker.runner import InstanceRunner
    from flowdeck_worker.services import Services

log = logging.getLogger(__name__)


async def _work(runner: InstanceRunner, queue: InProcessQueue) -> None:
    while True:
        job = await queue.get()
        try:
            with runner.job_span(
                job.trace, tenant_id=str(job.tenant_id), instance_id=str(job.instance_id), seq=job.seq
            ):
                await runner.run(job.tenant_id, job.instance_id)
        except Exception:
            log.exception("job %s failed (the scheduler re-sends its work)", job.key)
        finally:
            queue.done(job)


@asynccontextmanager
async def in_process(services: Services, *, workers: int = 2) -> AsyncIterator[Scheduler]:
    """Run ``workers`` job loops on the services' in-process queue, and a scheduler, while inside.

    On the way out they stop: a run in flight is cancelled and gives its lease back (its work is
    run again later), and the scheduler's connection is closed.
    """
    queue = services.queue
    if not isinstance(queue, InProcessQueue):
        raise ValidationError("the in-process worker needs the in-process queue")
    runner = build_runner(services)
    scheduler = Scheduler(services)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_work(runner, queue), name=f"flowdeck-worker-{i}") for i in range(workers)]
    tasks.append(asyncio.create_task(scheduler.run(stop), name="flowdeck-scheduler"))
    try:
        yield scheduler
    finally:
        stop.set()
        for task in tasks[:-1]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await runner.release_all()
        await scheduler.close()


__all__ = ["in_process"]
