"""External job routes: fetch (lease), complete, fail. Service tokens (and admins) only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from flowdeck_api.domain.jobs.schemas import JobComplete, JobFail, JobFetch, JobOutcome, JobRead
from flowdeck_api.domain.jobs.service import MAX_ATTEMPTS, JobService
from flowdeck_api.errors import responses
from flowdeck_api.security import SERVICES, principal_of


def provide_jobs(request: Request[Any, Any, Any]) -> JobService:
    """The caller's external jobs."""
    return JobService(request.app.state.tenants, principal_of(request), request.app.state.job_wakeups)


class JobController(Controller):
    """The tenant's own workers run external job steps: fetch a lease, then complete or fail."""

    path = "/jobs"
    tags = ["jobs"]
    guards = [SERVICES]
    dependencies = {"jobs": Provide(provide_jobs, sync_to_thread=False)}

    @post(
        "/fetch",
        status_code=200,
        request_max_body_size=4_096,
        responses=responses(400, 403, 413),
        summary="Lease waiting jobs of a type (long poll)",
        description="Leases up to `max_jobs` waiting jobs of `job_type` to the caller for `lease_seconds`. "
        "When none is waiting, waits up to `wait_seconds` for one and answers as soon as one appears "
        "(an empty list after that). A job whose lease lapses is offered again.",
    )
    async def fetch(self, data: JSONBody[JobFetch], jobs: NamedDependency[JobService]) -> list[JobRead]:
        """Lease jobs."""
        return await jobs.fetch(data)

    @post(
        "/{job_id:uuid}/complete",
        status_code=200,
        request_max_body_size=262_144,
        responses=responses(400, 403, 404, 409, 413, 422),
        summary="Complete a leased job",
        description="Only the lease holder, while the lease holds (409 otherwise). `output` is merged into "
        "the instance's context (at the step's result_key when it has one) and the workflow goes on.",
    )
    async def complete(
        self, job_id: FromPath[UUID], data: JSONBody[JobComplete], jobs: NamedDependency[JobService]
    ) -> JobOutcome:
        """Complete the job."""
        return await jobs.complete(job_id, data.output)

    @post(
        "/{job_id:uuid}/fail",
        status_code=200,
        request_max_body_size=16_384,
        responses=responses(400, 403, 404, 409, 413),
        summary="Fail a leased job",
        description="Only the lease holder, while the lease holds (409 otherwise). With `retry` the job is "
        f"offered again after `retry_in_seconds`, up to its {MAX_ATTEMPTS}rd lease; without, or after that, "
        "the step fails and so does the instance (an admin may retry it).",
    )
    async def fail(
        self, job_id: FromPath[UUID], data: JSONBody[JobFail], jobs: NamedDependency[JobService]
    ) -> JobOutcome:
        """Fail the job."""
        return await jobs.fail(job_id, data.error, retry=data.retry, retry_in_seconds=data.retry_in_seconds)
