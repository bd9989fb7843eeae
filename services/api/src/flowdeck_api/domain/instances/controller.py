"""Instance routes: start, list, get, cancel, retry, live diagram."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from flowdeck_api.domain.instances.schemas import (
    InstanceCancel,
    InstancePage,
    InstanceRead,
    InstanceRetry,
    InstanceStart,
    MermaidRead,
)
from flowdeck_api.domain.instances.service import InstanceService
from flowdeck_api.errors import responses
from flowdeck_api.pagination import clamp
from flowdeck_api.security import ADMIN, STARTERS, principal_of


def provide_instances(request: Request[Any, Any, Any]) -> InstanceService:
    """The caller's view of its tenant's instances."""
    state = request.app.state
    limits = state.settings.limits
    return InstanceService(
        state.tenants,
        principal_of(request),
        max_running=limits.max_running_instances,
        abandoned_after=timedelta(seconds=limits.idempotency_abandon_seconds),
        starts=getattr(state, "starts", None),
    )


class InstanceController(Controller):
    """Workflow instances. Admins see every instance of their tenant; others the ones they started."""

    path = "/instances"
    tags = ["instances"]
    dependencies = {"instances": Provide(provide_instances, sync_to_thread=False)}

    @post(
        "/",
        responses=responses(400, 403, 404, 409, 413, 422, 429, 503),
        guards=[STARTERS],
        status_code=201,
        request_max_body_size=262_144,
        opt={"start": True},
        summary="Start an instance",
        description="With an `Idempotency-Key` header, a retried start returns the first result "
        "(the same key with a different body is a 422). Rate-limited per tenant (429 with Retry-After).",
    )
    async def start(
        self,
        data: JSONBody[InstanceStart],
        instances: NamedDependency[InstanceService],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", max_length=255)] = None,
    ) -> Response[InstanceRead]:
        """Start an instance of a workflow."""
        read, created = await instances.start(data, idempotency_key)
        return Response(read, status_code=201 if created else 200)

    @get("/", responses=responses(400), summary="Instances, newest first, a page at a time")
    async def list_instances(
        self,
        instances: NamedDependency[InstanceService],
        request: Request[Any, Any, Any],
        workflow: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        created_by: FromQuery[str | None] = None,
        started_after: FromQuery[datetime | None] = None,
        started_before: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
    ) -> InstancePage:
        """List instances with filters and cursor pagination."""
        limits = request.app.state.settings.limits
        return await instances.list(
            workflow=workflow,
            status=status,
            created_by=created_by,
            started_after=started_after,
            started_before=started_before,
            cursor=cursor,
            limit=clamp(limit, limits.default_page_size, limits.max_page_size),
        )

    @get("/{instance_id:uuid}", responses=responses(404), summary="One instance with its context and history")
    async def get_instance(
        self, instance_id: FromPath[UUID], instances: NamedDependency[InstanceService]
    ) -> InstanceRead:
        """One instance."""
        return await instances.get(instance_id)

    @post(
        "/{instance_id:uuid}/cancel",
        responses=responses(400, 404, 409, 422),
        status_code=200,
        summary="Cancel an instance",
    )
    async def cancel(
        self, instance_id: FromPath[UUID], data: JSONBody[InstanceCancel], instances: NamedDependency[InstanceService]
    ) -> InstanceRead:
        """Cancel a running or waiting instance."""
        return await instances.cancel(instance_id, data.reason)

    @post(
        "/{instance_id:uuid}/retry",
        responses=responses(400, 403, 404, 409, 422),
        guards=[ADMIN],
        status_code=200,
        summary="Retry",
    )
    async def retry(
        self, instance_id: FromPath[UUID], data: JSONBody[InstanceRetry], instances: NamedDependency[InstanceService]
    ) -> InstanceRead:
        """Resume a failed instance from its failed step or a named one."""
        return await instances.retry(instance_id, data.from_step)

    @get("/{instance_id:uuid}/graph", responses=responses(404), summary="The diagram with the instance's progress")
    async def graph(self, instance_id: FromPath[UUID], instances: NamedDependency[InstanceService]) -> MermaidRead:
        """Mermaid text with current, completed and failed steps marked."""
        return MermaidRead(mermaid=await instances.mermaid(instance_id))
