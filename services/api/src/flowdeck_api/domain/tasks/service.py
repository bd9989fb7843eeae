"""The task inbox: who may see, claim, complete and reassign which task."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jsonschema import Draft7Validator
from jsonschema.validators import validator_for
from sqlalchemy import func, select, tuple_

from flowdeck_api.domain.tasks.schemas import TaskPage, TaskRead
from flowdeck_api.errors import ApiError, not_found
from flowdeck_api.pagination import decode_time_and_id, encode_cursor
from flowdeck_engine.documents.patterns import install as linear_patterns
from flowdeck_runtime.tenancy import in_tenant
from flowdeck_store import HumanTaskModel
from flowdeck_store.inbox import (
    INBOX_COLUMNS,
    NO_DUE,
    claim_task,
    inbox_page,
    principal_keys,
    route_tasks,
    routed,
    routing,
    task_for,
)

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

    from flowdeck_api.auth import Principal
    from flowdeck_engine import WorkflowInstance
    from flowdeck_runtime.tenants import Tenants

Task = HumanTaskModel
_LAST = NO_DUE
PENDING = "pending"
linear_patterns()  # a form's patterns match with RE2: linear time whatever a tenant wrote


def _read(row: HumanTaskModel) -> TaskRead:
    return TaskRead(**{name: getattr(row, column) for name, column in INBOX_COLUMNS})


def _completed(task: TaskRead, instance: WorkflowInstance, user: str) -> TaskRead | None:
    """``task`` as the completion by ``user`` just written left it (None if the history lacks it)."""
    for step in reversed(instance.step_history):
        if step.step_name == task.step_name and step.completed_by == user and step.completed_at is not None:
            task.status, task.completed_by, task.completed_at = "completed", user, step.completed_at
            return task
    return None


def form_errors(schema: dict[str, Any] | None, data: dict[str, Any]) -> list[dict[str, str]]:
    """Every way ``data`` breaks the form ``schema`` (an empty list when it fits), read in the
    form's own dialect: the one its ``$schema`` names, else draft 7, as the upload checked it."""
    if not schema:
        return []
    validator = validator_for(schema, default=Draft7Validator)(schema)
    return [
        {
            "code": f"form.{error.validator}",
            "pointer": "".join(f"/{part}" for part in error.absolute_path),
            "message": error.message,
        }
        for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]


class TaskService:
    """One principal's tasks: admins see every task of their tenant; others the tasks routed to them."""

    def __init__(self, tenants: Tenants, principal: Principal) -> None:
        self.tenants = tenants
        self.principal = principal
        self.tenant = principal.tenant_id

    def _keys(self) -> list[str]:
        """My principals in the inbox index (:mod:`flowdeck_store.inbox`)."""
        return principal_keys(self.principal.user_id, self.principal.groups)

    def _sees(self, routed: bool, task: HumanTaskModel | TaskRead) -> bool:
        """Whether I may see ``task``: admins every task of the tenant; others a task ``routed``
        to them (an inbox row for one of their principals), or one they claimed or completed."""
        me = self.principal.user_id
        return self.principal.is_admin or routed or me in (task.claimed_by, task.completed_by)

    async def inbox(
        self,
        *,
        workflow: str | None,
        status: str,
        due_before: datetime | None,
        cursor: str | None,
        limit: int,
        everyone: bool = False,
    ) -> TaskPage:
        """Tasks routed to me (``everyone``: all of the tenant's, for admins), by due time."""
        if due_before is not None and due_before.tzinfo is None:
            raise ApiError(400, "invalid_due_before", "due_before needs a time zone (an offset or Z)")
        after = None if cursor is None else decode_time_and_id(cursor)
        async with self.tenants.transaction(self.tenant) as session:
            if everyone:
                query = self._scan(workflow, status, due_before, after, limit)
                items = [_read(row) for row in (await session.execute(query)).scalars()]
            else:
                rows = await inbox_page(
                    session,
                    self.tenant,
                    self._keys(),
                    status=status,
                    workflow=workflow,
                    due_before=due_before,
                    after=after,
                    limit=limit + 1,
                )
                items = [TaskRead(**row) for row in rows]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_cursor = encode_cursor((last.due_at or _LAST).isoformat(), str(last.id))
        return TaskPage(items=items, next_cursor=next_cursor)

    def _scan(self, workflow: str | None, status: str, due_before: datetime | None, after: Any, limit: int) -> Any:
        """The tenant's tasks by due time: a scan of them (the admin view)."""
        due = func.coalesce(Task.due_at, _LAST)
        query = select(Task).where(in_tenant(Task, self.tenant), Task.status == status)
        if workflow is not None:
            query = query.where(Task.workflow_name == workflow)
        if due_before is not None:
            query = query.where(Task.due_at < due_before)
        if after is not None:
            query = query.where(tuple_(due, Task.id) > tuple(after))
        return query.order_by(due, Task.id).limit(limit + 1)

    async def _row(self, session: AsyncSession, task_id: UUID, *, lock: bool = False) -> HumanTaskModel:
        query = select(Task, routed(Task, self.tenant, self._keys()))
        query = query.where(in_tenant(Task, self.tenant), Task.id == task_id)
        found = (await session.execute(query.with_for_update(of=Task) if lock else query)).one_or_none()
        if found is None or not self._sees(found[1], found[0]):
            raise not_found("task")
        row: HumanTaskModel = found[0]
        return row

    async def get(self, task_id: UUID) -> TaskRead:
        """One task with its form schema."""
        async with self.tenants.transaction(self.tenant) as session:
            return _read(await self._row(session, task_id))

    async def claim(self, task_id: UUID) -> TaskRead:
        """Take an open task routed to me; of racing claims exactly one wins (409 for the others).

        One transaction: the conditional update claims; only when it claims nothing does a read
        tell a task that is not visible (404) from one that is closed or taken (409).
        """
        me = self.principal.user_id
        async with self.tenants.transaction(self.tenant) as session:
            claimed = await claim_task(session, self.tenant, task_id, self._keys(), me, datetime.now(UTC))
            if claimed is None:
                row = await self._row(session, task_id)
        if claimed is not None:
            return TaskRead(**claimed)
        if row.status != PENDING:
            raise ApiError(409, "task_not_open", "the task is not open")
        raise ApiError(409, "task_claimed", "someone else has claimed this task, or it is not routed to you")

    async def unclaim(self, task_id: UUID) -> TaskRead:
        """Give back a task I claimed (admins: anyone's claim)."""
        async with self.tenants.transaction(self.tenant) as session:
            row = await self._row(session, task_id, lock=True)
            if row.claimed_by is None or (row.claimed_by != self.principal.user_id and not self.principal.is_admin):
                raise ApiError(409, "task_not_claimed", "the task is not claimed by you")
            if row.status != PENDING:
                raise ApiError(409, "task_not_open", "the task is not open")
            row.claimed_by, row.claimed_at = None, None
        return _read(row)

    async def complete(self, task_id: UUID, data: dict[str, Any]) -> TaskRead:
        """Complete a task with its form: 422 with every field error; a second completion is a 409.

        One transaction: the read of the task (with its instance's version) and the engine's unit
        of work (it loads the instance and writes the change, fenced); the answer is built from
        what that wrote."""
        me = self.principal.user_id
        engine = self.tenants.engine(self.tenant)
        async with engine.transaction(self.tenant) as session:
            found = await task_for(session, self.tenant, task_id, self._keys())
            if found is None:
                raise not_found("task")
            version, routed = found.pop("workflow_version"), found.pop("routed")
            task = TaskRead(**found)
            if not self._sees(routed, task):
                raise not_found("task")
            self._check_completion(task, data)
            await self.tenants.definition(self.tenant, task.workflow, version)
            instance = await engine.complete_human_task(task.instance_id, task.step_name, me, data)
        done = _completed(task, instance, me)
        if done is not None:
            return done
        return await self.get(task_id)  # pragma: no cover (the engine always records who completed it)

    def _check_completion(self, task: TaskRead, data: dict[str, Any]) -> None:
        """Raise what keeps me from completing the open ``task`` with ``data``."""
        me = self.principal.user_id
        if task.status != PENDING:
            raise ApiError(409, "task_not_open", "the task is not open")
        if not self.principal.is_admin:
            if task.claimed_by not in (None, me):
                raise ApiError(409, "task_claimed", "someone else has claimed this task")
            if not (task.assignee == me or (task.assignee is None and self._may_take(task.candidate_groups))):
                raise ApiError(403, "forbidden", "this task is not routed to you")
        errors = form_errors(task.form_schema, data)
        if errors:
            raise ApiError(422, "invalid_form", "the form data does not fit the task's form", extra={"errors": errors})

    def _may_take(self, groups: list[str]) -> bool:
        return not groups or not self.principal.groups.isdisjoint(groups)

    async def reassign(self, task_id: UUID, assignee: str | None, groups: list[str] | None) -> TaskRead:
        """Give an open task to someone else (admins, or its current assignee or claimer)."""
        me = self.principal.user_id
        async with self.tenants.transaction(self.tenant) as session:
            row = await self._row(session, task_id, lock=True)
            if not (self.principal.is_admin or me in (row.assignee_id, row.claimed_by)):
                raise ApiError(403, "forbidden", "only an admin or the task's assignee can reassign it")
            if assignee is None and not groups:
                raise ApiError(422, "invalid_reassignment", "name an assignee or at least one candidate group")
            if row.status != PENDING:
                raise ApiError(409, "task_not_open", "the task is not open")
            row.assignee_id, row.claimed_by, row.claimed_at = assignee, None, None
            if groups is not None:
                row.candidate_groups, row.assignee_group = list(groups), groups[0] if groups else None
            await session.flush()
            await route_tasks(session, self.tenant, [routing(row)])
        return _read(row)
