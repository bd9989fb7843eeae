"""Outbound webhooks in SQL: an outbox event fanned out to deliveries, a delivery's attempts.

Every function runs in a transaction bound to the tenant (row-level security applies). The
scheduler calls :func:`fan_out` for an unpublished event (the event row is locked with
``SKIP LOCKED``, so of two schedulers one fans it out), then :func:`load_delivery` and
:func:`record_attempt` for each delivery it claimed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import Table, exists, insert, select, update

from flowdeck_store.models import OutboxEventModel, WebhookDeliveryModel, WebhookSubscriptionModel

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql import ColumnElement
    from sqlalchemy.sql.selectable import Exists

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
_OUTBOX = cast("Table", OutboxEventModel.__table__)
_SUBSCRIPTIONS = cast("Table", WebhookSubscriptionModel.__table__)
_DELIVERIES = cast("Table", WebhookDeliveryModel.__table__)


def active_subscription(tenant: UUID | ColumnElement[Any]) -> Exists:
    """Whether the tenant (an id, or a column of the enclosing query) has an active subscription."""
    return exists().where(_SUBSCRIPTIONS.c.tenant_id == tenant, _SUBSCRIPTIONS.c.active)


@dataclass(frozen=True, slots=True)
class DeliveryWork:
    """What sending one delivery needs: where, the secret, the event, the attempts so far."""

    id: UUID
    attempts: int
    url: str
    secret: str
    event_id: UUID
    event_type: str
    occurred_at: datetime
    instance_id: UUID
    payload: dict[str, Any]


async def fan_out(session: AsyncSession, tenant_id: UUID, event_id: UUID, now: datetime) -> int:
    """Create a pending delivery of the event for each matching active subscription, and mark the
    event published; the number of deliveries (0 when another scheduler has it, or had it)."""
    o = _OUTBOX.c
    event = (
        await session.execute(
            select(o.id, o.event_type)
            .where(o.tenant_id == tenant_id, o.id == event_id, o.published_at.is_(None))
            .with_for_update(skip_locked=True)
        )
    ).one_or_none()
    if event is None:
        return 0
    s = _SUBSCRIPTIONS.c
    subscriptions = (
        await session.execute(select(s.id, s.event_types).where(s.tenant_id == tenant_id, s.active.is_(True)))
    ).all()
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "subscription_id": sid,
            "event_id": event_id,
            "event_type": event.event_type,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for sid, types in subscriptions
        if not types or event.event_type in types
    ]
    if rows:
        await session.execute(insert(_DELIVERIES), rows)
    await session.execute(
        update(_OUTBOX).where(o.tenant_id == tenant_id, o.id == event_id).values(published_at=now, updated_at=now)
    )
    return len(rows)


async def load_delivery(session: AsyncSession, tenant_id: UUID, delivery_id: UUID) -> DeliveryWork | None:
    """A pending delivery with its subscription and event (None when it is no longer pending)."""
    d, s, o = _DELIVERIES.c, _SUBSCRIPTIONS.c, _OUTBOX.c
    row = (
        await session.execute(
            select(d.id, d.attempts, s.url, s.secret, o.id, o.event_type, o.occurred_at, o.instance_id, o.payload)
            .join(_SUBSCRIPTIONS, s.id == d.subscription_id)
            .join(_OUTBOX, o.id == d.event_id)
            .where(d.tenant_id == tenant_id, d.id == delivery_id, d.status == PENDING, s.active.is_(True))
        )
    ).one_or_none()
    return None if row is None else DeliveryWork(*row)


async def record_attempt(
    session: AsyncSession,
    tenant_id: UUID,
    delivery_id: UUID,
    *,
    status: str,
    attempts: int,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    """Write down one attempt's outcome: ``status`` (pending, delivered, failed) and the answer."""
    d = _DELIVERIES.c
    await session.execute(
        update(_DELIVERIES)
        .where(d.tenant_id == tenant_id, d.id == delivery_id)
        .values(
            status=status,
            attempts=attempts,
            last_status_code=status_code,
            last_error=None if error is None else error[:1000],
            next_attempt_at=next_attempt_at,
            delivered_at=now if status == DELIVERED else None,
            updated_at=now,
        )
    )


__all__ = ["DELIVERED", "FAILED", "PENDING", "DeliveryWork", "fan_out", "load_delivery", "record_attempt"]
