"""The task inbox: who may see, claim, complete and reassign which task."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from sqlalchemy import String, and_, cast, exists, func, literal, or_, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY

from flowdeck_api.domain.tasks.schemas import TaskPage, TaskRead
from flowdeck_api.errors import ApiError, not_found
from flowdeck_api.pagination import decode_time_and_id, encode_cursor
from flowdeck_runtime.tenancy import in_tenant
from flowdeck_store import HumanTaskModel

if TYPE_CHECKING:
    from uuid import UUID

    from flowdeck_api.auth import Principal
    from flowdeck_runtime.tenants import Tenants

Task = HumanTaskModel
_LAST = datetime(9999, 1, 1, tzinfo=UTC)
PENDING = "pending"


def _read(row: HumanTaskModel) -> TaskRead:
    return TaskRead(
        id=row.id,
        instance_id=row.instance_id,
        workflow=row.workflow_name,
        step_name=row.step_name,
        title=row.title,
        description=row.description,
        form_schema=row.form_schema,
        assignee=row.assignee_id,
        candidate_groups=list(row.candidate_groups or []),
        status=row.status,
        due_at=row.due_at,
        reminder_at=row.reminder_at,
        claimed_by=row.claimed_by,
        created_at=row.created_at,
        completed_at=row.completed_at,
        completed_by=row.completed_by,
    )


def form_errors(schema: dict[str, Any] | None, data: dict[str, Any]) -> list[dict[str, str]]:
    """Every way ``data`` breaks the form ``schema`` (an empty list when it fits)."""
    if not schema:
        return []
    return [
        {
            "code": f"form.{error.validator}",
            "pointer": "".join(f"/{part}" for part in error.absolute_path),
            "message": error.message,
        }
        for error in sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    ]


class TaskService:
    """One principal's tasks: admins see every task of their tenant; others the tasks routed to them."""

    def __init__(self, tenants: Tenants, principal: Principal, *, dialect: str) -> None:
        self.tenants = tenants
        self.principal = principal
        self.tenant = principal.tenant_id
        self._dialect = dialect

    def _in_my_groups(self) -> Any:
        groups = sorted(self.principal.groups)
        if not groups:
            return literal(False)
        if self._dialect == "postgresql":
            return Task.candidate_groups.op("?|")(cast(groups, ARRAY(String)))
        each = func.json_each(Task.candidate_groups).table_valued("value")
        return exists(select(1).select_from(each).where(each.c.value.in_(groups)))

    def _routed_to_me(self) -> Any:
        """Tasks assigned to me, or unassigned and open to one of my groups (or to anyone)."""
        me = self.principal.user_id
        no_groups = func.coalesce(func.json_array_length(Task.candidate_groups), 0) == 0
        if self._dialect == "postgresql":
            no_groups = func.coalesce(func.jsonb_array_length(Task.candidate_groups), 0) == 0
        return or_(Task.assignee_id == me, and_(Task.assignee_id.is_(None), or_(self._in_my_groups(), no_groups)))

    def _visible(self) -> Any:
        me = self.principal.user_id
        if self.principal.is_admin:
            return true()
        return or_(self._routed_to_me(), Task.completed_by == me, Task.claimed_by == me)

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
        due = func.coalesce(Task.due_at, _LAST)
        query = select(Task).where(in_tenant(Task, self.tenant), Task.status == status)
        query = query.where(self._visible() if everyone else self._routed_to_me())
        if workflow is not None:
            query = query.where(Task.workflow_name == workflow)
        if due_before is not None:
            query = query.where(Task.due_at < due_before)
        if cursor is not None:
            at_time, last = decode_time_and_id(cursor)
            query = query.where(or_(due > at_time, and_(due == at_time, Task.id > last)))
        query = query.order_by(due, Task.id).limit(limit + 1)
        async with self.tenants.transaction(self.tenant) as session:
            rows = (await session.execute(query)).scalars().all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last_row = rows[-1]
            next_cursor = encode_cursor((last_row.due_at or _LAST).isoformat(), str(last_row.id))
        return TaskPage(items=[_read(r) for r in rows], next_cursor=next_cursor)

    async def _row(self, task_id: UUID) -> HumanTaskModel:
        async with self.tenants.transaction(self.tenant) as session:
            row = (
                await session.execute(
                    select(Task).where(in_tenant(Task, self.tenant), Task.id == task_id, self._visible())
                )
            ).scalar_one_or_none()
        if row is None:
            raise not_found("task")
        return row

    async def get(self, task_id: UUID) -> TaskRead:
        """One task with its form schema."""
        return _read(await self._row(task_id))

    async def claim(self, task_id: UUID) -> TaskRead:
        """Take an open task routed to me; of racing claims exactly one wins (409 for the others).

        One transaction: the conditional update claims; only when it claims nothing does a read
        tell a task that is not visible (404) from one that is closed or taken (409).
        """
        me = self.principal.user_id
        async with self.tenants.transaction(self.tenant) as session:
            result = await session.execute(
                update(Task)
                .where(
                    in_tenant(Task, self.tenant),
                    Task.id == task_id,
                    Task.status == PENDING,
                    or_(Task.claimed_by.is_(None), Task.claimed_by == me),
                    self._routed_to_me(),
                )
                .values(claimed_by=me, claimed_at=datetime.now(UTC))
                .returning(Task)
            )
            claimed = result.scalar_one_or_none()
            if claimed is None:
                row = (
                    await session.execute(
                        select(Task).where(in_tenant(Task, self.tenant), Task.id == task_id, self._visible())
                    )
                ).scalar_one_or_none()
        if claimed is not None:
            return _read(claimed)
        if row is None:
            raise not_found("task")
        if row.status != PENDING:
            raise ApiError(409, "task_not_open", "the task is not open")
        raise ApiError(409, "task_claimed", "someone else has claimed this task, or it is not routed to you")

    async def unclaim(self, task_id: UUID) -> TaskRead:
        """Give back a task I claimed (admins: anyone's claim)."""
        row = await self._row(task_id)
        if row.claimed_by is None or (row.claimed_by != self.principal.user_id and not self.principal.is_admin):
            raise ApiError(409, "task_not_claimed", "the task is not claimed by you")
        async with self.tenants.transaction(self.tenant) as session:
            result = await session.execute(
                update(Task)
                .where(in_tenant(Task, self.tenant), Task.id == task_id, Task.status == PENDING)
                .values(claimed_by=None, claimed_at=None)
                .returning(Task)
            )
            released = result.scalar_one_or_none()
        if released is None:
            raise ApiError(409, "task_not_open", "the task is not open")
        return _read(released)

    async def complete(self, task_id: UUID, data: dict[str, Any]) -> TaskRead:
        """Complete a task with its form: 422 with every field error; a second completion is a 409."""
        row = await self._row(task_id)
        me = self.principal.user_id
        if row.status != PENDING:
            raise ApiError(409, "task_not_open", "the task is not open")
        if not self.principal.is_admin:
            if row.claimed_by not in (None, me):
                raise ApiError(409, "task_claimed", "someone else has claimed this task")
            if not (row.assignee_id == me or (row.assignee_id is None and self._may_take(row))):
                raise ApiError(403, "forbidden", "this task is not routed to you")
        errors = form_errors(row.form_schema, data)
        if errors:
            raise ApiError(422, "invalid_form", "the form data does not fit the task's form", extra={"errors": errors})
        engine = await self.tenants.prepare(self.tenant, row.instance_id)
        await engine.complete_human_task(row.instance_id, row.step_name, me, data)
        return _read(await self._row(task_id))

    def _may_take(self, row: HumanTaskModel) -> bool:
        groups = list(row.candidate_groups or [])
        return not groups or not self.principal.groups.isdisjoint(groups)

    async def reassign(self, task_id: UUID, assignee: str | None, groups: list[str] | None) -> TaskRead:
        """Give an open task to someone else (admins, or its current assignee or claimer)."""
        row = await self._row(task_id)
        me = self.principal.user_id
        if not (self.principal.is_admin or me in (row.assignee_id, row.claimed_by)):
            raise ApiError(403, "forbidden", "only an admin or the task's assignee can reassign it")
        if assignee is None and not groups:
            raise ApiError(422, "invalid_reassignment", "name an assignee or at least one candidate group")
        values: dict[str, Any] = {"assignee_id": assignee, "claimed_by": None, "claimed_at": None}
        if groups is not None:
            values["candidate_groups"] = groups
            values["assignee_group"] = groups[0] if groups else None
        async with self.tenants.transaction(self.tenant) as session:
            result = await session.execute(
                update(Task)
                .where(in_tenant(Task, self.tenant), Task.id == task_id, Task.status == PENDING)
                .values(**values)
                .returning(Task)
            )
            moved = result.scalar_one_or_none()
        if moved is None:
            raise ApiError(409, "task_not_open", "the task is not open")
        return _read(moved)
