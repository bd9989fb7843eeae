"""The worker's SAQ job: keyword-only, JSON-safe arguments (ids, not objects), idempotent."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from saq.types import Context

from flowdeck_worker.runner import TenantMismatchError

if TYPE_CHECKING:
    from flowdeck_worker.runner import InstanceRunner


class WorkerContext(Context, total=False):
    """SAQ's job context with the worker's runner."""

    runner: InstanceRunner


async def run_instance(
    ctx: WorkerContext, *, tenant_id: str, instance_id: str, seq: int, trace: dict[str, str] | None = None
) -> str:
    """Run the due machine steps of ``instance_id`` (of ``tenant_id``, whose state was at ``seq``).

    Idempotent: a duplicate or late job finds nothing due, or the lease taken, and does nothing.
    A tenant that does not own the instance fails the job at once (no retry): a security event.
    ``trace`` (W3C headers) makes the job's span a child of the request that made the steps due.
    """
    runner = ctx["runner"]
    job = ctx.get("job")
    beat = None if job is None else job.update
    try:
        with runner.job_span(trace, tenant_id=tenant_id, instance_id=instance_id, seq=seq):
            return await runner.run(UUID(tenant_id), UUID(instance_id), beat)
    except TenantMismatchError:
        if job is not None:
            job.retries = job.attempts  # not retryable: the same job can never become valid
        raise


__all__ = ["WorkerContext", "run_instance"]
