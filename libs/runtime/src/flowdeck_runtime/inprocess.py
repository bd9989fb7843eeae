"""The embedded mode's step queue: an asyncio queue in this process, in place of SAQ and Redis.

It has :class:`~flowdeck_runtime.queue.SaqStepQueue`'s interface and keys (``instance_id:seq``:
an enqueue of a job already waiting is a no-op), and like it holds nothing that matters: the
database holds the pending work, so a job lost with the process is re-sent by the scheduler's
reconciler, and a duplicate finds nothing due. The in-process worker
(:mod:`flowdeck_worker.embedded`) takes its jobs with :meth:`get` and marks them :meth:`done`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

from flowdeck_engine import ValidationError
from flowdeck_runtime.queue import current_trace, instance_job_key, job_trace

if TYPE_CHECKING:
    from flowdeck_engine import WorkflowInstance


class InstanceJob(NamedTuple):
    """Resume ``instance_id`` of ``tenant_id``, whose state was at ``seq``; ``trace``: the W3C
    context of the call that made its steps due (the worker's span joins that trace)."""

    key: str
    tenant_id: UUID
    instance_id: UUID
    seq: int
    trace: dict[str, str]


class InProcessQueue:
    """Jobs for the in-process worker, one per instance and sequence number."""

    def __init__(self) -> None:
        self._jobs: asyncio.Queue[InstanceJob] = asyncio.Queue()
        self._waiting: set[str] = set()

    async def connect(self) -> None:
        """Nothing to connect."""

    async def disconnect(self) -> None:
        """Nothing to close."""

    async def enqueue(self, instance: WorkflowInstance, steps: list[str]) -> None:
        """Ask the worker to resume ``instance`` (its ``steps`` are due)."""
        if instance.tenant_id is None:
            raise ValidationError(f"instance {instance.id} has no tenant")
        tenant = UUID(str(instance.tenant_id))
        await self.enqueue_instance(tenant, instance.id, instance.state.seq, job_trace(instance))

    async def enqueue_instance(
        self, tenant_id: UUID, instance_id: UUID, seq: int, trace: dict[str, str] | None = None
    ) -> bool:
        """Queue the job for ``instance_id`` at ``seq`` (in ``trace``, else the current one);
        False when that job is already waiting."""
        key = instance_job_key(instance_id, seq)
        if key in self._waiting:
            return False
        self._waiting.add(key)
        self._jobs.put_nowait(InstanceJob(key, tenant_id, instance_id, seq, trace or current_trace()))
        return True

    async def resend(self, tenant_id: UUID, instance_id: UUID, seq: int) -> str:
        """The reconciler's re-send: ``sent``, or ``waiting`` when the job is queued or running."""
        return "sent" if await self.enqueue_instance(tenant_id, instance_id, seq) else "waiting"

    async def get(self) -> InstanceJob:
        """The next job (it counts as waiting until :meth:`done`)."""
        return await self._jobs.get()

    def done(self, job: InstanceJob) -> None:
        """``job`` ran (or failed: the reconciler re-sends its work)."""
        self._waiting.discard(job.key)
        self._jobs.task_done()

    async def join(self) -> None:
        """Wait until every queued job is done."""
        await self._jobs.join()


__all__ = ["InProcessQueue", "InstanceJob"]
