"""Stored workflow definitions: one row per tenant, name and (immutable) version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flowdeck_store.base import TenantOwned

if TYPE_CHECKING:
    from flowdeck_store.models.instances import WorkflowInstanceModel


class WorkflowDefinitionModel(TenantOwned):
    """A workflow definition version of a tenant; ``definition_json`` is its document."""

    __tablename__ = "workflow_definitions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "version"),
        Index("ix_workflow_definitions_tenant_active", "tenant_id", "name", "is_active"),
    )

    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    definition_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    instances: Mapped[list[WorkflowInstanceModel]] = relationship(
        back_populates="definition", lazy="noload", viewonly=True
    )
