"""Workflow instances: their state, fenced by an optimistic ``version``."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)
from typing import TYPE_CHECKING, Any
from uuid import UUID  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)

from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flowdeck_store.base import TenantOwned

if TYPE_CHECKING:
    from flowdeck_store.models.definitions import WorkflowDefinitionModel


class WorkflowInstanceModel(TenantOwned):
    """One run of a workflow.

    The queryable columns (status, current steps, data, times) mirror ``kernel_state``, the engine
    kernel's full state (less its data, which is ``context_data``). ``version`` counts the saved
    changes; every write is ``UPDATE ... WHERE version = :expected``.
    """

    __tablename__ = "workflow_instances"
    __table_args__ = (
        Index("ix_workflow_instances_tenant_status", "tenant_id", "status"),
        Index("ix_workflow_instances_tenant_workflow", "tenant_id", "workflow_name", "status"),
        Index("ix_workflow_instances_tenant_created_by", "tenant_id", "created_by"),
    )

    definition_id: Mapped[UUID] = mapped_column(ForeignKey("workflow_definitions.id", ondelete="RESTRICT"), index=True)
    workflow_name: Mapped[str] = mapped_column(String(255))
    workflow_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    current_step: Mapped[str | None] = mapped_column(String(255), default=None)
    current_steps: Mapped[list[str]] = mapped_column(JsonB, default=list)
    context_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    created_by: Mapped[str | None] = mapped_column(String(255), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    kernel_state: Mapped[dict[str, Any]] = mapped_column(default=dict)

    definition: Mapped[WorkflowDefinitionModel] = relationship(back_populates="instances", lazy="noload")
