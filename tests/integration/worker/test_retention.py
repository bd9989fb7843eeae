"""Retention: the scheduler removes old published events (with their delivery log) and old
idempotency keys across tenants, on SQLite and on PostgreSQL as the system role, and keeps the rest."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select
from sqlalchemy.pool import NullPool

from flowdeck_engine.documents import load_definition
from flowdeck_runtime.dispatch import StoredWaits
from flowdeck_runtime.inprocess import InProcessQueue
from flowdeck_runtime.settings import load_settings
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import (
    IdempotencyKeyModel,
    OutboxEventModel,
    TenantModel,
    WebhookDeliveryModel,
    WebhookSubscriptionModel,
    create_engine,
    session_factory,
)
from flowdeck_worker import Scheduler
from flowdeck_worker import scheduler as scheduler_module
from flowdeck_worker.services import Services
from tests.e2e import documents

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)
# (event, when it was published, the status of its one delivery or None): the first three go
OUTBOX = (
    ("old-delivered", OLD, "delivered"),
    ("old-failed", OLD, "failed"),
    ("old-unsubscribed", OLD, None),
    ("old-pending", OLD, "pending"),
    ("recent", NOW - timedelta(days=1), "delivered"),
    ("unpublished", None, None),
)
KEPT = {"old-pending", "recent", "unpublished"}


async def _tenant_with_history(tenants: Tenants) -> uuid.UUID:
    """A tenant with one instance, the events of :data:`OUTBOX`, and a key 8 days old and a new one."""
    tenant = uuid.uuid4()
    async with tenants.transaction(tenant) as session:
        session.add(TenantModel(id=tenant, slug=f"kept-{tenant.hex[:8]}", name="kept"))
    engine = tenants.engine(tenant)
    engine.registry.register_definition(load_definition(documents.machines("one-machine", count=1)))
    instance = await engine.start_workflow("one-machine", tenant_id=str(tenant))
    async with tenants.transaction(tenant) as session:
        await session.execute(delete(OutboxEventModel).where(OutboxEventModel.tenant_id == tenant))  # the start's
        subscription = WebhookSubscriptionModel(tenant_id=tenant, url="https://example.com/hook", secret="s" * 32)
        session.add(subscription)
        await session.flush()
        for name, published_at, delivery in OUTBOX:
            event = OutboxEventModel(
                tenant_id=tenant,
                instance_id=instance.id,
                event_type=name,
                payload={},
                occurred_at=published_at or NOW,
                published_at=published_at,
            )
            session.add(event)
            await session.flush()
            if delivery is not None:
                session.add(
                    WebhookDeliveryModel(
                        tenant_id=tenant,
                        subscription_id=subscription.id,
                        event_id=event.id,
                        event_type=name,
                        status=delivery,
                    )
                )
        for key, age in (("old", timedelta(days=8)), ("new", timedelta(hours=1))):
            session.add(IdempotencyKeyModel(tenant_id=tenant, scope="instances.start", key=key, created_at=NOW - age))
    return tenant


async def _left(tenants: Tenants, tenant: uuid.UUID) -> tuple[set[str], set[str], set[str]]:
    """The tenant's events, the events of its deliveries, and its idempotency keys."""
    async with tenants.transaction(tenant) as session:
        events = set((await session.execute(select(OutboxEventModel.event_type))).scalars())
        delivered = set((await session.execute(select(WebhookDeliveryModel.event_type))).scalars())
        keys = set((await session.execute(select(IdempotencyKeyModel.key))).scalars())
    return events, delivered, keys


async def test_the_scheduler_removes_what_is_past_retention_in_batches_and_keeps_the_rest(
    system_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(system_url, **({} if system_url.startswith("sqlite") else {"poolclass": NullPool}))
    settings = load_settings()
    settings = replace(settings, database=replace(settings.database, url=system_url))
    assert (settings.work.event_retention_days, settings.work.idempotency_key_days) == (30, 7)
    queue = InProcessQueue()
    tenants = Tenants(session_factory(engine), step_queue=queue, dispatcher=StoredWaits())
    scheduler = Scheduler(Services(settings, engine, tenants, queue))
    monkeypatch.setattr(scheduler_module, "_PRUNE_BATCH", 4)
    try:
        acme, globex = await _tenant_with_history(tenants), await _tenant_with_history(tenants)
        await scheduler.housekeep()  # a full batch of events (4 of the 6 to go): due again at once
        assert scheduler.pruned == {"event": 4, "idempotency_key": 2}
        await scheduler.housekeep()  # the last 2: short, so the next round is an hour away
        await scheduler.housekeep()
        assert scheduler.pruned == {"event": 6, "idempotency_key": 2}
        for tenant in (acme, globex):
            events, delivered, keys = await _left(tenants, tenant)
            assert events == KEPT
            assert delivered == {"old-pending", "recent"}  # the removed events' log went with them
            assert keys == {"new"}
    finally:
        await scheduler.close()
        await engine.dispose()
