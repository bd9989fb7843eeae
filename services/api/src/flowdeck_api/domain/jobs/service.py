"""External jobs: leases on the callback-token rows of waiting external job steps.

The store writes one ``workflow_callback_tokens`` row for every waiting callback step, a webhook
or an external job (:class:`~flowdeck_engine.documents.ExternalJobStep`), and deletes it when the
wait ends; the row's ``id`` is the job's id. A fetch leases free rows of the job type to the caller
(one ``UPDATE ... RETURNING`` over rows locked with ``SKIP LOCKED``, so two fetchers never get
the same job); only the lease holder may complete or fail the job while the lease holds. A lease
that lapses, or a failure with ``retry``, offers the job again. The engine stays the arbiter of the
step itself: of two completions racing past an expired lease, one resumes the step, the other is
a 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, tuple_, update

from flowdeck_api.domain.jobs.schemas import JobFetch, JobOutcome, JobRead
from flowdeck_api.errors import ApiError, not_found
from flowdeck_engine import InvalidTransitionError, WorkflowNotFoundError
from flowdeck_engine.documents import ExternalJobStep
from flowdeck_runtime.tenancy import in_tenant
from flowdeck_store import CallbackTokenModel, WorkflowInstanceModel

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.sql import ColumnElement, Select

    from flowdeck_api.auth import Principal
    from flowdeck_api.domain.jobs.wakeups import JobWakeups
    from flowdeck_runtime.tenants import Tenants

Job = CallbackTokenModel
Instance = WorkflowInstanceModel
MAX_ATTEMPTS = 3
"""A failure with ``retry`` on the job's third lease fails the step instead."""

StepKey = tuple[str, str, str]
"""(workflow name, version, step name)"""


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= now)


def _not_expired(now: datetime) -> ColumnElement[bool]:
    return or_(Job.expires_at.is_(None), Job.expires_at > now)


def _job_failed(error: InvalidTransitionError) -> ApiError:
    return ApiError(409, "job_not_open", f"the job's step is no longer waiting ({error.reason})")


class JobService:
    """The caller's external jobs: fetch (lease), complete, fail."""

    def __init__(self, tenants: Tenants, principal: Principal, wakeups: JobWakeups) -> None:
        self.tenants = tenants
        self.principal = principal
        self.tenant = principal.tenant_id
        self.wakeups = wakeups

    # --- fetch -------------------------------------------------------------------------------------

    async def fetch(self, request: JobFetch) -> list[JobRead]:
        """Lease waiting jobs of the type; until one appears or ``wait_seconds`` pass, look again
        when the tenant's jobs change (:mod:`~flowdeck_api.domain.jobs.wakeups`)."""
        deadline = time.monotonic() + request.wait_seconds
        while True:
            changed = self.wakeups.event(self.tenant) if request.wait_seconds else None
            jobs = await self._claim(request)
            left = deadline - time.monotonic()
            if jobs or left <= 0 or changed is None:
                return jobs
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(self.wakeups.wait_seconds, left))

    async def _claim(self, request: JobFetch) -> list[JobRead]:
        now = datetime.now(UTC)
        keys = await self._matching_steps(request.job_type, now)
        if not keys:
            return []
        candidates = (
            self._free(now, Job.id)
            .where(tuple_(Instance.workflow_name, Instance.workflow_version, Job.step_name).in_(keys))
            .order_by(Job.created_at, Job.id)
            .limit(request.max_jobs)
            .with_for_update(skip_locked=True, of=Job)
        )
        lease_until = now + timedelta(seconds=request.lease_seconds)
        async with self.tenants.transaction(self.tenant) as session:
            claimed = (
                await session.execute(
                    update(Job)
                    .where(in_tenant(Job, self.tenant), Job.id.in_(candidates), _lease_free(now))
                    .values(
                        lease_owner=self.principal.user_id,
                        lease_expires_at=lease_until,
                        attempts=Job.attempts + 1,
                        updated_at=now,
                    )
                    .returning(Job.id, Job.instance_id, Job.step_name, Job.lease_expires_at, Job.attempts)
                )
            ).all()
            if not claimed:
                return []
            inputs: dict[UUID, dict[str, Any]] = {
                row[0]: row[1]
                for row in await session.execute(
                    select(Instance.id, Instance.context_data).where(
                        in_tenant(Instance, self.tenant), Instance.id.in_({row[1] for row in claimed})
                    )
                )
            }
        return [
            JobRead(
                id=row[0],
                instance_id=row[1],
                step_name=row[2],
                job_type=request.job_type,
                input=dict(inputs.get(row[1]) or {}),
                lease_expires_at=row[3],
                attempt=row[4],
            )
            for row in claimed
        ]

    def _free(self, now: datetime, *columns: Any) -> Select[Any]:
        """``columns`` of the tenant's waiting job rows that no live lease holds and that have not expired."""
        return (
            select(*columns)
            .join(Instance, Instance.id == Job.instance_id)
            .where(in_tenant(Job, self.tenant), in_tenant(Instance, self.tenant), _lease_free(now), _not_expired(now))
        )

    async def _matching_steps(self, job_type: str, now: datetime) -> list[StepKey]:
        """The (workflow, version, step) of free waiting rows whose step is a job of ``job_type``."""
        async with self.tenants.transaction(self.tenant) as session:
            keys = (
                await session.execute(
                    self._free(now, Instance.workflow_name, Instance.workflow_version, Job.step_name).distinct()
                )
            ).all()
        found: list[StepKey] = []
        for name, version, step_name in keys:
            step = await self._job_step(name, version, step_name)
            if step is not None and step.job_type == job_type:
                found.append((name, version, step_name))
        return found

    async def _job_step(self, name: str, version: str, step_name: str) -> ExternalJobStep | None:
        try:
            definition = await self.tenants.definition(self.tenant, name, version)
        except WorkflowNotFoundError:
            return None
        step = definition.steps.get(step_name)
        return step if isinstance(step, ExternalJobStep) else None

    # --- complete and fail -------------------------------------------------------------------------

    async def _leased(self, job_id: UUID) -> tuple[Job, str]:
        """The job, leased to the caller and its lease holding; 404 when the tenant has no such job
        (a webhook's callback row is not a job), 409 when the caller does not hold its lease."""
        async with self.tenants.transaction(self.tenant) as session:
            found = (
                await session.execute(
                    select(Job, Instance.workflow_name, Instance.workflow_version, Instance.status)
                    .join(Instance, Instance.id == Job.instance_id)
                    .where(in_tenant(Job, self.tenant), in_tenant(Instance, self.tenant), Job.id == job_id)
                )
            ).one_or_none()
        if found is None or await self._job_step(found[1], found[2], found[0].step_name) is None:
            raise not_found("job")
        job: Job = found[0]
        expires = job.lease_expires_at
        if job.lease_owner != self.principal.user_id or expires is None or expires <= datetime.now(UTC):
            raise ApiError(409, "job_not_leased", "the job is not leased to you, or its lease has expired")
        return job, str(found[3])

    async def _release(self, job_id: UUID, *, not_before: datetime | None = None) -> int | None:
        """Give up the caller's lease (the job is offered again from ``not_before``); its attempts,
        or None when the caller no longer holds the lease."""
        now = datetime.now(UTC)
        async with self.tenants.transaction(self.tenant) as session:
            return (
                await session.execute(
                    update(Job)
                    .where(
                        in_tenant(Job, self.tenant),
                        Job.id == job_id,
                        and_(Job.lease_owner == self.principal.user_id, Job.lease_expires_at > now),
                    )
                    .values(lease_owner=None, lease_expires_at=not_before, updated_at=now)
                    .returning(Job.attempts)
                )
            ).scalar_one_or_none()

    async def complete(self, job_id: UUID, output: dict[str, Any]) -> JobOutcome:
        """Resume the job's step with ``output`` (merged like a callback's payload)."""
        job, _ = await self._leased(job_id)
        engine = await self.tenants.prepare(self.tenant, job.instance_id)
        try:
            instance = await engine.receive_callback(job.instance_id, job.step_name, output)
        except InvalidTransitionError as exc:
            raise _job_failed(exc) from None
        # The row is gone, unless the step waits again in the same change (a loop): offer that wait.
        await self._release(job_id)
        return JobOutcome(
            id=job_id,
            instance_id=job.instance_id,
            status="completed",
            instance_status=instance.status.value,
            attempt=job.attempts,
        )

    async def fail(self, job_id: UUID, error: str, *, retry: bool, retry_in_seconds: int = 0) -> JobOutcome:
        """Give up the job: offered again when ``retry`` and attempts are left, else its step fails."""
        job, instance_status = await self._leased(job_id)
        if retry and job.attempts < MAX_ATTEMPTS:
            not_before = datetime.now(UTC) + timedelta(seconds=retry_in_seconds) if retry_in_seconds else None
            attempts = await self._release(job_id, not_before=not_before)
            if attempts is None:
                raise ApiError(409, "job_not_leased", "the job is not leased to you, or its lease has expired")
            return JobOutcome(
                id=job_id,
                instance_id=job.instance_id,
                status="released",
                instance_status=instance_status,
                attempt=attempts,
            )
        engine = await self.tenants.prepare(self.tenant, job.instance_id)
        try:
            instance = await engine.fail_wait(job.instance_id, job.step_name, error)
        except InvalidTransitionError as exc:
            raise _job_failed(exc) from None
        return JobOutcome(
            id=job_id,
            instance_id=job.instance_id,
            status="failed",
            instance_status=instance.status.value,
            attempt=job.attempts,
        )
