"""Outbound webhooks: a tenant's subscriptions to its workflow events, and the delivery log."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)
from uuid import UUID  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)

from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from flowdeck_store.base import TenantOwned


class WebhookSubscriptionModel(TenantOwned):
    """Where to POST a tenant's events: ``event_types`` (empty: every event), signed with ``secret``."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_tenant_active", "tenant_id", "active"),)

    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))
    event_types: Mapped[list[str]] = mapped_column(JsonB, default=list)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class WebhookDeliveryModel(TenantOwned):
    """One event for one subscription: ``pending`` (next try at ``next_attempt_at``), ``delivered``
    or ``failed`` (attempts used up); the last attempt's answer is kept."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subscription_id", "event_id"),
        Index("ix_webhook_deliveries_tenant_subscription", "tenant_id", "subscription_id", "created_at"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # removing an old event (retention) finds its deliveries by it, for the cascade
        Index("ix_webhook_deliveries_event", "event_id"),
    )

    subscription_id: Mapped[UUID] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[UUID] = mapped_column(ForeignKey("workflow_outbox.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
