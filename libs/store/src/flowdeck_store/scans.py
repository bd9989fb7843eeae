"""The scheduler's and worker's cross-tenant scans, and the per-tenant reads that follow them.

Across tenants only the SECURITY DEFINER functions of migration 0004 are called: they return
``(tenant_id, id)`` pairs (and claim them). Every item is then read and handled in a
transaction bound to its own tenant, where row-level security applies as everywhere else.

SQLite (the embedded mode: one process, one scheduler, no row-level security) has no functions:
there the same claims are made by :func:`_claim_portable`, statement by statement.

:func:`prune` is the scheduler's retention: it removes old published events and old idempotency
keys across tenants (``flowdeck_prune``, migration 0011).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, cast

from sqlalchemy import Table, and_, case, delete, exists, or_, select, text, update

from flowdeck_store.models import (
    IdempotencyKeyModel,
    OutboxEventModel,
    PendingWorkModel,
    TimerModel,
    WebhookDeliveryModel,
    WorkflowInstanceModel,
)
from flowdeck_store.webhooks import PENDING, active_subscription

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

TIMER: Final = "timer"
WORK: Final = "work"
EVENT: Final = "event"
DELIVERY: Final = "delivery"
IDEMPOTENCY_KEY: Final = "idempotency_key"
_TIMERS = cast("Table", TimerModel.__table__)
_INSTANCES = cast("Table", WorkflowInstanceModel.__table__)
_WORK = cast("Table", PendingWorkModel.__table__)
_OUTBOX = cast("Table", OutboxEventModel.__table__)
_DELIVERIES = cast("Table", WebhookDeliveryModel.__table__)
_KEYS = cast("Table", IdempotencyKeyModel.__table__)
_CLAIM = text("SELECT kind, tenant_id, id FROM flowdeck_claim_due(:limit, :claim, :quiet)")
_INSTANCE_TENANT = text("SELECT flowdeck_instance_tenant(:id)")
_PRUNE = text("SELECT kind, removed FROM flowdeck_prune(:events_before, :keys_before, :limit)")


@dataclass(frozen=True, slots=True)
class DueItem:
    """A claimed item: a due ``timer`` row (``id`` is the row's), or ``work`` (``id`` is the instance's)."""

    kind: str
    tenant_id: UUID
    id: UUID


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A timer row as its tenant sees it: ``kind`` is ``timer``, ``timeout`` or ``escalation``."""

    id: UUID
    instance_id: UUID
    step_name: str
    kind: str
    fire_at: datetime


async def claim_due(
    connection: AsyncConnection, *, limit: int, claim_seconds: int, quiet_seconds: int
) -> list[DueItem]:
    """Claim what is due across tenants, each item once across schedulers (one statement)."""
    if connection.dialect.name != "postgresql":
        return await _claim_portable(connection, limit, claim_seconds, quiet_seconds)
    rows = await connection.execute(_CLAIM, {"limit": limit, "claim": claim_seconds, "quiet": quiet_seconds})
    return [DueItem(kind, tenant, item) for kind, tenant, item in rows.all()]


async def _claim_portable(
    connection: AsyncConnection, limit: int, claim_seconds: int, quiet_seconds: int
) -> list[DueItem]:
    """``flowdeck_claim_due`` for a database without it (SQLite, one scheduler): the same claims."""
    now = datetime.now(UTC)
    later = now + timedelta(seconds=claim_seconds)
    t, w, o, d = _TIMERS.c, _WORK.c, _OUTBOX.c, _DELIVERIES.c
    timers = (
        await connection.execute(select(t.tenant_id, t.id).where(t.fire_at <= now).order_by(t.fire_at).limit(limit))
    ).all()
    if timers:
        await connection.execute(
            update(_TIMERS).where(t.id.in_([i for _, i in timers])).values(fire_at=later, updated_at=now)
        )
    stuck = (
        await connection.execute(
            select(w.id, w.tenant_id, w.instance_id)
            .where(
                or_(w.not_before.is_(None), w.not_before <= now),
                or_(
                    and_(w.lease_owner.is_(None), w.updated_at <= now - timedelta(seconds=quiet_seconds)),
                    w.lease_expires_at <= now,
                ),
            )
            .order_by(w.updated_at)
            .limit(limit)
        )
    ).all()
    if stuck:
        fence = case((w.lease_owner.is_(None), w.fence), else_=w.fence + 1)
        await connection.execute(
            update(_WORK)
            .where(w.id.in_([row.id for row in stuck]))
            .values(lease_owner=None, lease_expires_at=None, fence=fence, updated_at=now)
        )
    subscribed = active_subscription(o.tenant_id)
    await connection.execute(update(_OUTBOX).where(o.published_at.is_(None), ~subscribed).values(published_at=now))
    events = (
        await connection.execute(
            select(o.tenant_id, o.id).where(o.published_at.is_(None), subscribed).order_by(o.occurred_at).limit(limit)
        )
    ).all()
    pending = d.status == PENDING
    deliveries = (
        await connection.execute(
            select(d.tenant_id, d.id).where(pending, d.next_attempt_at <= now).order_by(d.next_attempt_at).limit(limit)
        )
    ).all()
    if deliveries:
        await connection.execute(
            update(_DELIVERIES)
            .where(d.id.in_([i for _, i in deliveries]))
            .values(next_attempt_at=later, updated_at=now)
        )
    return [
        *(DueItem(TIMER, tenant, item) for tenant, item in timers),
        *(DueItem(WORK, tenant, item) for tenant, item in dict.fromkeys((r.tenant_id, r.instance_id) for r in stuck)),
        *(DueItem(EVENT, tenant, item) for tenant, item in events),
        *(DueItem(DELIVERY, tenant, item) for tenant, item in deliveries),
    ]


async def prune(
    connection: AsyncConnection, *, events_before: datetime | None, keys_before: datetime | None, limit: int
) -> dict[str, int]:
    """Remove, across tenants, up to ``limit`` of each: outbox events published before
    ``events_before`` that no delivery is still pending for (their delivery log goes with them),
    and idempotency keys created before ``keys_before`` (None: keep that kind). The number of rows
    removed, by kind (``event``, ``idempotency_key``)."""
    if connection.dialect.name == "postgresql":
        args = {"events_before": events_before, "keys_before": keys_before, "limit": limit}
        return {kind: int(n) for kind, n in (await connection.execute(_PRUNE, args)).all()}
    o, d, k = _OUTBOX.c, _DELIVERIES.c, _KEYS.c
    removed = {EVENT: 0, IDEMPOTENCY_KEY: 0}
    if events_before is not None:
        pending = exists().where(d.event_id == o.id, d.status == PENDING)
        old = select(o.id).where(o.published_at < events_before, ~pending).order_by(o.published_at).limit(limit)
        result = await connection.execute(delete(_OUTBOX).where(o.id.in_(old.scalar_subquery())))
        removed[EVENT] = result.rowcount
    if keys_before is not None:
        old = select(k.id).where(k.created_at < keys_before).order_by(k.created_at).limit(limit)
        result = await connection.execute(delete(_KEYS).where(k.id.in_(old.scalar_subquery())))
        removed[IDEMPOTENCY_KEY] = result.rowcount
    return removed


async def instance_tenant(session: AsyncSession, instance_id: UUID) -> UUID | None:
    """The tenant of the instance ``instance_id`` (None when there is no such instance)."""
    query = (
        _INSTANCE_TENANT
        if session.get_bind().dialect.name == "postgresql"
        else select(_INSTANCES.c.tenant_id).where(_INSTANCES.c.id == instance_id)
    )
    found: UUID | None = (await session.execute(query, {"id": instance_id})).scalar_one_or_none()
    return found


async def load_timer(session: AsyncSession, tenant_id: UUID, timer_id: UUID) -> DueTimer | None:
    """The tenant's timer row ``timer_id`` (None when it is gone: fired or canceled meanwhile)."""
    c = _TIMERS.c
    row = (
        await session.execute(
            select(c.id, c.instance_id, c.step_name, c.kind, c.fire_at).where(
                c.tenant_id == tenant_id, c.id == timer_id
            )
        )
    ).one_or_none()
    return None if row is None else DueTimer(*row)


async def drop_timer(session: AsyncSession, tenant_id: UUID, timer_id: UUID) -> None:
    """Remove a handled timer row that its instance's change did not remove (a stale wait)."""
    c = _TIMERS.c
    await session.execute(delete(_TIMERS).where(c.tenant_id == tenant_id, c.id == timer_id))


async def instance_seq(session: AsyncSession, tenant_id: UUID, instance_id: UUID) -> int | None:
    """The sequence number of the instance's stored state (None when the tenant has no such instance)."""
    c = _INSTANCES.c
    raw = (
        await session.execute(select(c.kernel_state).where(c.tenant_id == tenant_id, c.id == instance_id))
    ).scalar_one_or_none()
    return None if raw is None else int(raw.get("seq", 0))


__all__ = [
    "DELIVERY",
    "EVENT",
    "IDEMPOTENCY_KEY",
    "TIMER",
    "WORK",
    "DueItem",
    "DueTimer",
    "claim_due",
    "drop_timer",
    "instance_seq",
    "instance_tenant",
    "load_timer",
    "prune",
]
