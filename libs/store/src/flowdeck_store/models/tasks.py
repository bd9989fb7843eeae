"""Human tasks: the inbox rows of steps waiting for a person."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)
from typing import Any
from uuid import UUID  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)

from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from flowdeck_store.base import Base, InstanceOwned


class HumanTaskModel(InstanceOwned):
    """A task for ``assignee_id`` or, when unassigned, any member of ``candidate_groups``.

    ``assignee_group`` is the first candidate group (the seeds' single-group column).
    """

    __tablename__ = "workflow_human_tasks"
    __table_args__ = (
        Index("ix_workflow_human_tasks_tenant_instance", "tenant_id", "instance_id", "step_name"),
        Index("ix_workflow_human_tasks_tenant_assignee", "tenant_id", "status", "assignee_id"),
        Index("ix_workflow_human_tasks_tenant_group", "tenant_id", "status", "assignee_group"),
        Index("ix_workflow_human_tasks_tenant_due", "tenant_id", "status", "due_at"),
    )

    step_execution_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("workflow_step_executions.id", ondelete="SET NULL"), default=None
    )
    workflow_name: Mapped[str] = mapped_column(String(255))
    step_name: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    form_schema: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    assignee_id: Mapped[str | None] = mapped_column(String(255), default=None)
    assignee_group: Mapped[str | None] = mapped_column(String(255), default=None)
    candidate_groups: Mapped[list[str]] = mapped_column(JsonB, default=list)
    due_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    reminder_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    claimed_by: Mapped[str | None] = mapped_column(String(255), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    completed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    completed_by: Mapped[str | None] = mapped_column(String(255), default=None)


class TaskCandidateModel(Base):
    """Who finds a task in their inbox: one row per principal the task is routed to.

    ``principal`` is ``u:<user>`` for an assigned task, else ``g:<group>`` per candidate group, or
    ``*`` when it is open to anyone (see :mod:`flowdeck_store.inbox`). ``status`` and ``due_key``
    (the due time, or :data:`~flowdeck_store.inbox.NO_DUE`) copy the task's, so that one btree
    range per principal yields a user's inbox in order, whatever the tenant's size.
    """

    __tablename__ = "workflow_task_candidates"
    __table_args__ = (
        Index("ix_workflow_task_candidates_inbox", "tenant_id", "principal", "status", "due_key", "task_id"),
    )

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[UUID] = mapped_column(ForeignKey("workflow_human_tasks.id", ondelete="CASCADE"), primary_key=True)
    principal: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    due_key: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
