"""Step executions: an instance's history, one row per attempt, gap-free by ``seq``."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)
from typing import Any

from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from flowdeck_store.base import InstanceOwned


class StepExecutionModel(InstanceOwned):
    """One execution (attempt) of a step; ``seq`` is its place in the instance's history."""

    __tablename__ = "workflow_step_executions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "instance_id", "seq"),
        Index("ix_workflow_step_executions_tenant_step", "tenant_id", "instance_id", "step_name"),
        Index("ix_workflow_step_executions_tenant_status", "tenant_id", "status"),
    )

    seq: Mapped[int] = mapped_column(Integer)
    step_name: Mapped[str] = mapped_column(String(255))
    step_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    input_data: Mapped[Any | None] = mapped_column(JsonB, default=None)
    output_data: Mapped[Any | None] = mapped_column(JsonB, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    assigned_to: Mapped[str | None] = mapped_column(String(255), default=None)
    completed_by: Mapped[str | None] = mapped_column(String(255), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
