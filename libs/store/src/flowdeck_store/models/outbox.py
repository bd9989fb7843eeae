"""The outbox: workflow events written in the transaction of the change they describe."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from flowdeck_store.base import InstanceOwned


class OutboxEventModel(InstanceOwned):
    """One public workflow event, to be published (``published_at`` set) by the outbox relay."""

    __tablename__ = "workflow_outbox"
    __table_args__ = (
        Index("ix_workflow_outbox_tenant_instance", "tenant_id", "instance_id"),
        Index("ix_workflow_outbox_unpublished", "published_at", "occurred_at"),
    )

    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
