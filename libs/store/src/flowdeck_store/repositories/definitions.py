"""Workflow definition rows by name and version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from advanced_alchemy.filters import LimitOffset

from flowdeck_engine.registry import version_key
from flowdeck_store.models import WorkflowDefinitionModel
from flowdeck_store.repositories.base import TenantRepository

if TYPE_CHECKING:
    from collections.abc import Sequence


class WorkflowDefinitionRepository(TenantRepository[WorkflowDefinitionModel]):
    """The tenant's workflow definitions."""

    model_type = WorkflowDefinitionModel

    async def get_by_name(
        self, name: str, version: str | None = None, *, active_only: bool = True
    ) -> WorkflowDefinitionModel | None:
        """The definition ``name`` at ``version``, or its latest (active) version when None."""
        m = self.model_type
        conditions = [m.name == name]
        if version is not None:
            conditions.append(m.version == version)
        if active_only:
            conditions.append(m.is_active.is_(True))
        rows = await self.get_many(*self.scoped(*conditions), LimitOffset(limit=1000, offset=0))
        if not rows:
            return None
        return max(rows, key=lambda r: version_key(r.version))

    async def get_latest_version(self, name: str) -> WorkflowDefinitionModel | None:
        """The latest active version of ``name`` (by semantic version)."""
        return await self.get_by_name(name, active_only=True)

    async def list_active(self) -> Sequence[WorkflowDefinitionModel]:
        """Every active definition, by name then version."""
        rows = await self.get_many(*self.scoped(self.model_type.is_active.is_(True)))
        return sorted(rows, key=lambda r: (r.name, version_key(r.version)))
