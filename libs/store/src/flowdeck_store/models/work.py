"""What instances wait for: machine steps to run (with leases), timers, callback tokens."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from flowdeck_store.base import InstanceOwned


class PendingWorkModel(InstanceOwned):
    """A machine step attempt that is due (now, or at ``not_before``).

    A worker takes it by writing a lease (``lease_owner``, ``lease_expires_at``) and bumping
    ``fence``; a commit by an owner whose ``fence`` is stale changes nothing.
    """

    __tablename__ = "workflow_pending_work"
    __table_args__ = (
        Index("ix_workflow_pending_work_tenant_instance", "tenant_id", "instance_id", "step_name"),
        Index("ix_workflow_pending_work_due", "not_before"),
        Index("ix_workflow_pending_work_lease", "lease_expires_at"),
    )

    step_name: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    not_before: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(255), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    fence: Mapped[int] = mapped_column(Integer, default=0)


class TimerModel(InstanceOwned):
    """A wake-up: a timer step firing (``kind`` "timer") or a callback wait timing out ("timeout")."""

    __tablename__ = "workflow_timers"
    __table_args__ = (
        Index("ix_workflow_timers_tenant_instance", "tenant_id", "instance_id", "step_name"),
        Index("ix_workflow_timers_fire_at", "fire_at"),
    )

    step_name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    fire_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class CallbackTokenModel(InstanceOwned):
    """The secret an external system presents to call back a waiting webhook step.

    A waiting external job step has one too: the jobs API offers the row (its ``id`` is the job's
    id) to the tenant's workers and leases it to one at a time (``lease_owner`` until
    ``lease_expires_at``; ``attempts`` counts the leases). A lease that lapses offers the job again;
    a released job with a ``lease_expires_at`` but no owner is offered again from that time.
    """

    __tablename__ = "workflow_callback_tokens"
    __table_args__ = (
        UniqueConstraint("tenant_id", "token"),
        Index("ix_workflow_callback_tokens_tenant_instance", "tenant_id", "instance_id", "step_name"),
        # the callback route knows only the token: flowdeck_callback_target() looks it up by it
        Index("ix_workflow_callback_tokens_token", "token"),
    )

    step_name: Mapped[str] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(255), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
