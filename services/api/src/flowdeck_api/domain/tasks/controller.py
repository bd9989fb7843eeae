"""Task routes: the inbox, one task, claim, unclaim, complete, reassign, and the admin view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from flowdeck_api.domain.tasks.schemas import TaskComplete, TaskPage, TaskRead, TaskReassign
from flowdeck_api.domain.tasks.service import TaskService
from flowdeck_api.errors import responses
from flowdeck_api.pagination import clamp
from flowdeck_api.security import ADMIN, MEMBERS, principal_of


def provide_tasks(request: Request[Any, Any, Any]) -> TaskService:
    """The caller's tasks."""
    return TaskService(request.app.state.tenants, principal_of(request))


def _page(request: Request[Any, Any, Any], limit: int | None) -> int:
    limits = request.app.state.settings.limits
    return clamp(limit, limits.default_page_size, limits.max_page_size)


class TaskController(Controller):
    """Human tasks routed to the caller: assigned to them, or unassigned and open to one of their groups."""

    path = "/tasks"
    tags = ["tasks"]
    guards = [MEMBERS]
    dependencies = {"tasks": Provide(provide_tasks, sync_to_thread=False)}

    @get("/", responses=responses(400, 403), summary="My inbox, by due time")
    async def inbox(
        self,
        request: Request[Any, Any, Any],
        tasks: NamedDependency[TaskService],
        workflow: FromQuery[str | None] = None,
        status: Annotated[str, QueryParameter(pattern="^(pending|completed|canceled)$")] = "pending",
        due_before: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
    ) -> TaskPage:
        """Tasks routed to me."""
        return await tasks.inbox(
            workflow=workflow, status=status, due_before=due_before, cursor=cursor, limit=_page(request, limit)
        )

    @get("/{task_id:uuid}", responses=responses(403, 404), summary="One task with its form")
    async def get_task(self, task_id: FromPath[UUID], tasks: NamedDependency[TaskService]) -> TaskRead:
        """One task."""
        return await tasks.get(task_id)

    @post("/{task_id:uuid}/claim", responses=responses(403, 404, 409), status_code=200, summary="Claim a task")
    async def claim(self, task_id: FromPath[UUID], tasks: NamedDependency[TaskService]) -> TaskRead:
        """Take the task; concurrent claims have one winner."""
        return await tasks.claim(task_id)

    @post(
        "/{task_id:uuid}/unclaim",
        responses=responses(403, 404, 409),
        status_code=200,
        summary="Give a claimed task back",
    )
    async def unclaim(self, task_id: FromPath[UUID], tasks: NamedDependency[TaskService]) -> TaskRead:
        """Release my claim."""
        return await tasks.unclaim(task_id)

    @post(
        "/{task_id:uuid}/complete",
        responses=responses(400, 403, 404, 409, 422),
        status_code=200,
        summary="Complete a task with its form",
        description="The form data is validated against the task's JSON Schema: a 422 lists every field "
        "error. A task completed already answers 409 and nothing changes.",
    )
    async def complete(
        self, task_id: FromPath[UUID], data: JSONBody[TaskComplete], tasks: NamedDependency[TaskService]
    ) -> TaskRead:
        """Complete the task; the workflow goes on."""
        return await tasks.complete(task_id, data.data)

    @post(
        "/{task_id:uuid}/reassign",
        responses=responses(400, 403, 404, 409, 422),
        status_code=200,
        summary="Reassign a task",
    )
    async def reassign(
        self, task_id: FromPath[UUID], data: JSONBody[TaskReassign], tasks: NamedDependency[TaskService]
    ) -> TaskRead:
        """Give the task to another user or to groups (admins, or the current assignee)."""
        return await tasks.reassign(task_id, data.assignee, data.candidate_groups)


class AdminTaskController(Controller):
    """Every task of the tenant, for org admins."""

    path = "/admin/tasks"
    tags = ["tasks"]
    guards = [ADMIN]
    dependencies = {"tasks": Provide(provide_tasks, sync_to_thread=False)}

    @get("/", responses=responses(400, 403), summary="All tasks of the tenant, by due time")
    async def all_tasks(
        self,
        request: Request[Any, Any, Any],
        tasks: NamedDependency[TaskService],
        workflow: FromQuery[str | None] = None,
        status: Annotated[str, QueryParameter(pattern="^(pending|completed|canceled)$")] = "pending",
        due_before: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
    ) -> TaskPage:
        """All tasks."""
        return await tasks.inbox(
            workflow=workflow,
            status=status,
            due_before=due_before,
            cursor=cursor,
            limit=_page(request, limit),
            everyone=True,
        )
