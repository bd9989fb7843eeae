"""Human task rows: inboxes, overdue tasks, completing and canceling."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from advanced_alchemy.filters import OrderBy
from sqlalchemy import String, cast, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB

from flowdeck_engine import TaskStatus
from flowdeck_store.inbox import add_candidates, routing, set_status
from flowdeck_store.models import HumanTaskModel
from flowdeck_store.repositories.base import TenantRepository

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from sqlalchemy import ColumnElement


class HumanTaskRepository(TenantRepository[HumanTaskModel]):
    """The tenant's human tasks.

    ``complete_task`` and ``cancel_task`` change only the task row; to complete a task so that
    its workflow goes on, use the engine's ``complete_human_task``.
    """

    model_type = HumanTaskModel

    async def add(self, data: HumanTaskModel, *args: Any, **kwargs: Any) -> HumanTaskModel:
        """Add a task with its inbox rows (:mod:`flowdeck_store.inbox`), in one transaction."""
        return (await self.add_many([data], *args, **kwargs))[0]

    async def add_many(self, data: list[HumanTaskModel], *args: Any, **kwargs: Any) -> Sequence[HumanTaskModel]:
        """Add tasks with their inbox rows (:mod:`flowdeck_store.inbox`), in one transaction."""
        kwargs.pop("auto_refresh", None)
        commit = kwargs.pop("auto_commit", None)
        tasks = await super().add_many(data, *args, auto_commit=False, **kwargs)
        for tenant_id in {task.tenant_id for task in tasks}:
            mine = [task for task in tasks if task.tenant_id == tenant_id]
            await add_candidates(self.session, tenant_id, [routing(task) for task in mine])
        if commit or (commit is None and self.auto_commit):
            await self.session.commit()
        return tasks

    def _in_group(self, group: str) -> ColumnElement[bool]:
        groups = self.model_type.candidate_groups
        if self._dialect.name == "postgresql":
            return cast(groups, JSONB).op("@>")(func.jsonb_build_array(group))
        each = func.json_each(groups).table_valued("value")
        return exists(select(literal(1)).select_from(each).where(cast(each.c.value, String) == group))

    async def find_pending(
        self, assignee_id: str | None = None, assignee_group: str | None = None
    ) -> Sequence[HumanTaskModel]:
        """Pending tasks; with ``assignee_id`` or ``assignee_group``, those that user or group may
        work on (assigned to them, or offered to the group, or open to anyone), oldest first."""
        m = self.model_type
        conditions: list[ColumnElement[bool]] = [m.status == TaskStatus.PENDING.value]
        if assignee_id is not None or assignee_group is not None:
            unassigned = m.assignee_id.is_(None)
            mine: list[ColumnElement[bool]] = []
            if assignee_id is not None:
                mine.append(m.assignee_id == assignee_id)
            if assignee_group is not None:
                mine.append(unassigned & self._in_group(assignee_group))
            mine.append(unassigned & (m.assignee_group.is_(None)))
            conditions.append(or_(*mine))
        return await self.get_many(*self.scoped(*conditions), OrderBy("created_at", "asc"))

    async def find_by_instance(self, instance_id: UUID) -> Sequence[HumanTaskModel]:
        """Every task of an instance, oldest first."""
        return await self.get_many(
            *self.scoped(self.model_type.instance_id == instance_id), OrderBy("created_at", "asc")
        )

    async def find_overdue(self, now: datetime | None = None) -> Sequence[HumanTaskModel]:
        """Pending tasks whose due time has passed."""
        m = self.model_type
        moment = now or datetime.now(UTC)
        return await self.get_many(
            *self.scoped(m.status == TaskStatus.PENDING.value, m.due_at.is_not(None), m.due_at < moment),
            OrderBy("due_at", "asc"),
        )

    async def _close(self, task_id: UUID, status: TaskStatus, completed_by: str | None) -> HumanTaskModel | None:
        m = self.model_type
        now = datetime.now(UTC)
        values: dict[str, object] = {"status": status.value, "updated_at": now}
        if status is TaskStatus.COMPLETED:
            values.update(completed_by=completed_by, completed_at=now)
        result = await self.session.execute(
            update(m)
            .where(*self.scoped(m.id == task_id, m.status == TaskStatus.PENDING.value))
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        await set_status(self.session, self.tenant_id, [task_id], status.value)
        task = await self.get_one_or_none(*self.scoped(m.id == task_id))
        if task is not None:
            await self.session.refresh(task)
        return task

    async def complete_task(self, task_id: UUID, completed_by: str) -> HumanTaskModel | None:
        """Mark a pending task completed by ``completed_by``; None when it is not pending (or not found)."""
        return await self._close(task_id, TaskStatus.COMPLETED, completed_by)

    async def cancel_task(self, task_id: UUID) -> HumanTaskModel | None:
        """Cancel a pending task; None when it is not pending (or not found)."""
        return await self._close(task_id, TaskStatus.CANCELED, None)
