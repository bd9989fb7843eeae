"""Step execution rows: an instance's history."""

from __future__ import annotations

from typing import TYPE_CHECKING

from advanced_alchemy.filters import LimitOffset, OrderBy

from flowdeck_engine import StepStatus
from flowdeck_store.models import StepExecutionModel
from flowdeck_store.repositories.base import TenantRepository

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID


class StepExecutionRepository(TenantRepository[StepExecutionModel]):
    """The tenant's step execution records."""

    model_type = StepExecutionModel

    async def find_by_instance(self, instance_id: UUID) -> Sequence[StepExecutionModel]:
        """An instance's step executions in the order they happened."""
        return await self.get_many(*self.scoped(self.model_type.instance_id == instance_id), OrderBy("seq", "asc"))

    async def find_by_step_name(self, instance_id: UUID, step_name: str) -> StepExecutionModel | None:
        """The most recent execution of ``step_name`` in the instance."""
        m = self.model_type
        rows = await self.get_many(
            *self.scoped(m.instance_id == instance_id, m.step_name == step_name),
            OrderBy("seq", "desc"),
            LimitOffset(limit=1, offset=0),
        )
        return rows[0] if rows else None

    async def find_failed(self, instance_id: UUID | None = None) -> Sequence[StepExecutionModel]:
        """Failed step executions, of one instance or all the tenant's."""
        m = self.model_type
        conditions = [m.status == StepStatus.FAILED.value]
        if instance_id is not None:
            conditions.append(m.instance_id == instance_id)
        return await self.get_many(*self.scoped(*conditions), OrderBy("started_at", "asc"))
