"""Workflow instance rows: by workflow, user, tenant, status."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from advanced_alchemy.filters import LimitOffset, OrderBy
from sqlalchemy import update

from flowdeck_engine import WorkflowStatus
from flowdeck_store.models import WorkflowInstanceModel
from flowdeck_store.repositories.base import TenantRepository

if TYPE_CHECKING:
    from collections.abc import Sequence

_LIVE = (WorkflowStatus.RUNNING.value, WorkflowStatus.WAITING.value, WorkflowStatus.PENDING.value)


def _status(status: WorkflowStatus | str | None) -> str | None:
    return None if status is None else WorkflowStatus(status).value


class WorkflowInstanceRepository(TenantRepository[WorkflowInstanceModel]):
    """The tenant's workflow instances (read side; the engine writes through its store)."""

    model_type = WorkflowInstanceModel

    async def find_by_workflow(
        self, workflow_name: str, status: WorkflowStatus | str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[WorkflowInstanceModel], int]:
        """Instances of ``workflow_name`` (optionally in ``status``), newest first, and their total."""
        m = self.model_type
        conditions = [m.workflow_name == workflow_name]
        if (value := _status(status)) is not None:
            conditions.append(m.status == value)
        return await self.get_many_and_count(
            *self.scoped(*conditions), LimitOffset(limit, offset), OrderBy("started_at", "desc")
        )

    async def find_by_user(
        self, user_id: str, status: WorkflowStatus | str | None = None
    ) -> Sequence[WorkflowInstanceModel]:
        """Instances started by ``user_id``, newest first."""
        m = self.model_type
        conditions = [m.created_by == user_id]
        if (value := _status(status)) is not None:
            conditions.append(m.status == value)
        return await self.get_many(*self.scoped(*conditions), OrderBy("started_at", "desc"))

    async def find_by_tenant(
        self, tenant_id: UUID | str, status: WorkflowStatus | str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[WorkflowInstanceModel], int]:
        """Instances of ``tenant_id`` (nothing unless it is the session's tenant), and their total."""
        m = self.model_type
        conditions = [m.tenant_id == UUID(str(tenant_id))]
        if (value := _status(status)) is not None:
            conditions.append(m.status == value)
        return await self.get_many_and_count(
            *self.scoped(*conditions), LimitOffset(limit, offset), OrderBy("started_at", "desc")
        )

    async def find_running(self) -> Sequence[WorkflowInstanceModel]:
        """Instances still under way (running or waiting), oldest first."""
        return await self.get_many(*self.scoped(self.model_type.status.in_(_LIVE)), OrderBy("started_at", "asc"))

    async def update_status(
        self,
        instance_id: UUID,
        status: WorkflowStatus | str,
        *,
        current_step: str | None = None,
        error: str | None = None,
    ) -> WorkflowInstanceModel | None:
        """Set an instance's status columns (an administrative override), bumping its version.

        The engine never calls this: its changes go through the kernel and the fenced store.
        """
        m = self.model_type
        values: dict[str, object] = {"status": WorkflowStatus(status).value, "version": m.version + 1}
        if current_step is not None:
            values["current_step"] = current_step
        if error is not None:
            values["error"] = error
        result = await self.session.execute(
            update(m)
            .where(*self.scoped(m.id == instance_id))
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        found = await self.get_one_or_none(*self.scoped(m.id == instance_id))
        if found is not None:
            await self.session.refresh(found)
        return found
