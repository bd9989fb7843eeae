"""The worker's and scheduler's pieces on real PostgreSQL (app role, RLS on) and Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from saq import Queue
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from flowdeck_engine import WorkflowInstance, WorkflowStatus
from flowdeck_engine.documents import load_definition
from flowdeck_runtime.dispatch import StoredWaits
from flowdeck_runtime.queue import SaqStepQueue, instance_job_key
from flowdeck_runtime.settings import WorkSettings
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import (
    OutboxEventModel,
    PendingWorkModel,
    StaleLeaseError,
    StepExecutionModel,
    TenantModel,
    TimerModel,
    WorkflowInstanceModel,
    claim_due,
    create_engine,
    session_factory,
    take_lease,
    take_leases,
)
from flowdeck_worker import InstanceRunner, TenantMismatchError
from tests.e2e import documents
from tests.integration.conftest import Database, NewTenant

Sessions = async_sessionmaker[AsyncSession]


class RecordingQueue:
    """A step queue that only records what it was asked."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, uuid.UUID, int]] = []

    async def enqueue(self, instance: WorkflowInstance, steps: list[str]) -> None:
        self.sent.append((instance.tenant_id, instance.id, instance.state.seq))


@pytest.fixture
def tenants(pg_system_engine: AsyncEngine) -> Tenants:
    return Tenants(session_factory(pg_system_engine), step_queue=RecordingQueue(), dispatcher=StoredWaits())


@pytest.fixture
def new_pg_tenant(tenants: Tenants) -> NewTenant:
    async def make(slug: str) -> uuid.UUID:
        tenant = uuid.uuid4()
        async with tenants.transaction(tenant) as session:
            session.add(TenantModel(id=tenant, slug=f"{slug}-{tenant.hex[:8]}", name=slug))
        return tenant

    return make


async def _start(tenants: Tenants, tenant: uuid.UUID, doc: dict[str, Any]) -> WorkflowInstance:
    engine = tenants.engine(tenant)
    definition = load_definition(doc)
    if not engine.registry.has_definition(definition.name, definition.version):
        engine.registry.register_definition(definition)
    return await engine.start_workflow(definition.name, tenant_id=tenant)


async def _count(tenants: Tenants, tenant: uuid.UUID, model: Any, **where: Any) -> int:
    async with tenants.transaction(tenant) as session:
        query = select(func.count()).select_from(model).where(model.tenant_id == tenant)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int((await session.execute(query)).scalar_one())


async def test_the_api_side_only_enqueues_after_commit_and_the_worker_runs_the_chain(
    tenants: Tenants, new_pg_tenant: NewTenant
) -> None:
    tenant = await new_pg_tenant("acme")
    instance = await _start(tenants, tenant, documents.machines(count=3))
    assert instance.status is WorkflowStatus.RUNNING
    queue = tenants.step_queue
    assert isinstance(queue, RecordingQueue)
    assert queue.sent == [(str(tenant), instance.id, instance.state.seq)]
    assert await _count(tenants, tenant, PendingWorkModel, instance_id=instance.id) == 1

    runner = InstanceRunner(tenants, lease_seconds=10, heartbeat_seconds=5)
    assert await runner.run(tenant, instance.id) == "done"
    assert (await tenants.engine(tenant).get_instance(instance.id)).status is WorkflowStatus.COMPLETED
    assert await _count(tenants, tenant, StepExecutionModel, instance_id=instance.id) == 3
    assert await _count(tenants, tenant, PendingWorkModel, instance_id=instance.id) == 0
    # A duplicate job finds nothing due.
    assert await runner.run(tenant, instance.id) == "idle"


async def test_a_worker_whose_lease_was_taken_over_commits_nothing(tenants: Tenants, new_pg_tenant: NewTenant) -> None:
    tenant = await new_pg_tenant("acme")
    instance = await _start(tenants, tenant, documents.machines(count=3))
    engine = tenants.engine(tenant)
    async with tenants.transaction(tenant) as session:
        paused = await take_lease(session, tenant, instance.id, "paused-worker", 0.2)
    assert paused is not None
    async with tenants.transaction(tenant) as session:  # the lease holds: nobody else gets it
        assert await take_lease(session, tenant, instance.id, "other", 30) is None
    await asyncio.sleep(0.3)
    async with tenants.transaction(tenant) as session:  # expired: taken over, fence bumped
        current = await take_lease(session, tenant, instance.id, "live-worker", 30)
    assert current is not None
    assert set(current.fences.values()) == {f + 1 for f in paused.fences.values()}

    with pytest.raises(StaleLeaseError):
        await engine.resume(instance.id, lease=paused)
    stored = await engine.get_instance(instance.id)
    assert stored.version == instance.version and stored.status is WorkflowStatus.RUNNING
    assert await _count(tenants, tenant, StepExecutionModel, instance_id=instance.id) == 0

    done = await engine.resume(instance.id, lease=current)
    assert done.status is WorkflowStatus.COMPLETED
    assert await _count(tenants, tenant, StepExecutionModel, instance_id=instance.id) == 3


async def test_concurrent_jobs_take_their_leases_together_each_for_its_owner(
    tenants: Tenants, new_pg_tenant: NewTenant
) -> None:
    tenant = await new_pg_tenant("acme")
    started = [await _start(tenants, tenant, documents.machines(count=2)) for _ in range(3)]
    held, free, again = (i.id for i in started)
    async with tenants.transaction(tenant) as session:
        assert await take_lease(session, tenant, held, "first", 30) is not None
    async with tenants.transaction(tenant) as session:
        leases = await take_leases(session, tenant, [(held, "a"), (free, "b"), (again, "c")], 30)
    assert set(leases) == {free, again}  # the held one is not taken over
    assert (leases[free].owner, leases[again].owner) == ("b", "c")
    assert leases[free].workflow == ("three-machines", "1.0.0")

    runner = InstanceRunner(tenants, lease_seconds=10, heartbeat_seconds=5)
    others = [await _start(tenants, tenant, documents.machines(count=2)) for _ in range(8)]
    results = await asyncio.gather(*(runner.run(tenant, i.id) for i in others))
    assert results == ["done"] * 8
    for instance in others:
        assert (await tenants.engine(tenant).get_instance(instance.id)).status is WorkflowStatus.COMPLETED


async def test_a_job_cancelled_while_its_lease_is_taken_gives_the_lease_back_at_shutdown(
    tenants: Tenants, new_pg_tenant: NewTenant
) -> None:
    tenant = await new_pg_tenant("acme")
    instance = await _start(tenants, tenant, documents.machines(count=3))
    runner = InstanceRunner(tenants, lease_seconds=60, heartbeat_seconds=30)
    job = asyncio.create_task(runner.run(tenant, instance.id))
    await asyncio.sleep(0)  # the job waits for its lease, which a batch takes
    job.cancel()  # SIGTERM's grace ran out, say
    with pytest.raises(asyncio.CancelledError):
        await job
    for _ in range(100):  # the batch goes on and takes the lease nobody waits for any more
        if runner.held:
            break
        await asyncio.sleep(0.02)
    assert instance.id in runner.held
    await runner.release_all()  # what the worker does on its way out
    async with tenants.transaction(tenant) as session:  # free again at once, not after 60 s
        assert await take_lease(session, tenant, instance.id, "next-worker", 30) is not None


async def test_a_job_naming_another_tenant_fails_as_a_security_event(
    tenants: Tenants, new_pg_tenant: NewTenant, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await new_pg_tenant("acme")
    intruder = await new_pg_tenant("evil")
    instance = await _start(tenants, owner, documents.machines(count=3))
    runner = InstanceRunner(tenants, lease_seconds=10, heartbeat_seconds=5)
    with caplog.at_level(logging.ERROR, logger="flowdeck.security"), pytest.raises(TenantMismatchError):
        await runner.run(intruder, instance.id)
    assert any("security event" in r.getMessage() for r in caplog.records)
    # Nothing of the owner's instance moved, and its work is still there for its own job.
    assert await _count(tenants, owner, PendingWorkModel, instance_id=instance.id, lease_owner=None) == 1
    assert await runner.run(owner, instance.id) == "done"
    assert await runner.run(intruder, uuid.uuid4()) == "gone"


async def test_each_due_timer_is_claimed_by_exactly_one_of_two_schedulers(
    tenants: Tenants, new_pg_tenant: NewTenant, truncated: Database
) -> None:
    tenant = await new_pg_tenant("acme")
    runner = InstanceRunner(tenants, lease_seconds=10, heartbeat_seconds=5)
    for _ in range(30):
        instance = await _start(tenants, tenant, documents.timer(0.1))
        await runner.run(tenant, instance.id)  # runs "before"; the timer waits
    assert await _count(tenants, tenant, TimerModel) == 30
    await asyncio.sleep(0.2)
    engines = [create_engine(truncated.system_url, poolclass=NullPool, isolation_level="AUTOCOMMIT") for _ in "ab"]
    try:
        conns = [await e.connect() for e in engines]
        claims = await asyncio.gather(
            *(claim_due(c, limit=20, claim_seconds=30, quiet_seconds=60) for c in conns for _ in range(2))
        )
        for conn in conns:
            await conn.close()
    finally:
        for e in engines:
            await e.dispose()
    timers = [item.id for claim in claims for item in claim if item.kind == "timer"]
    assert len(timers) == 30 and len(set(timers)) == 30
    assert {item.tenant_id for claim in claims for item in claim} == {tenant}


async def test_events_no_subscription_wants_are_marked_published_and_never_handed_out(
    tenants: Tenants, new_pg_tenant: NewTenant, truncated: Database
) -> None:
    """An event the scan's bulk mark skipped (here: locked by another transaction) is left for the
    next poll, not handed to the scheduler to fan out alone to nobody."""
    tenant = await new_pg_tenant("quiet")
    await _start(tenants, tenant, documents.machines(count=1))
    outbox = OutboxEventModel
    async with tenants.transaction(tenant) as session:  # as if written while a subscription was active
        await session.execute(update(outbox).values(published_at=None))
    engine = create_engine(truncated.system_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with tenants.transaction(tenant) as holder:
            held = (await holder.execute(select(outbox.id).limit(1).with_for_update())).scalar_one()
            async with engine.connect() as conn:
                claimed = await claim_due(conn, limit=20, claim_seconds=30, quiet_seconds=60)
            assert [item for item in claimed if item.kind == "event"] == []
        async with engine.connect() as conn:
            claimed = await claim_due(conn, limit=20, claim_seconds=30, quiet_seconds=60)
        assert [item for item in claimed if item.kind == "event"] == []
    finally:
        await engine.dispose()
    async with tenants.transaction(tenant) as session:
        unpublished = select(func.count()).select_from(outbox).where(outbox.published_at.is_(None))
        assert (await session.execute(unpublished)).scalar_one() == 0
        assert (await session.execute(select(outbox.published_at).where(outbox.id == held))).scalar_one() is not None


async def test_jobs_carry_explicit_settings_in_redis_and_a_duplicate_key_is_a_no_op(redis_url: str) -> None:
    queue = SaqStepQueue.from_url(redis_url, WorkSettings(queue_name=f"t-{uuid.uuid4().hex[:6]}"))
    try:
        tenant, iid = uuid.uuid4(), uuid.uuid4()
        assert await queue.enqueue_instance(tenant, iid, 4) is True
        assert await queue.enqueue_instance(tenant, iid, 4) is False
        stored = await queue.queue.job(instance_job_key(iid, 4))
        assert stored is not None
        for name, value in queue.settings.fields().items():
            assert getattr(stored, name) == value, name
        assert stored.kwargs == {"tenant_id": str(tenant), "instance_id": str(iid), "seq": 4}
        # Its job still waits: a re-send is a no-op too.
        assert await queue.resend(tenant, iid, 4) == "waiting"
    finally:
        await queue.disconnect()
    assert isinstance(queue.queue, Queue)


async def test_a_lease_taken_with_its_instance_loads_it_once_and_a_retry_reads_afresh(
    tenants: Tenants, new_pg_tenant: NewTenant
) -> None:
    tenant = await new_pg_tenant("acme")
    instance = await _start(tenants, tenant, documents.machines(count=3))
    engine = tenants.engine(tenant)
    async with tenants.transaction(tenant) as session:
        leases = await take_leases(session, tenant, [(instance.id, "worker-a")], 10, load=True)
    lease = leases[instance.id]
    assert lease.loaded is not None
    assert lease.loaded["id"] == instance.id and lease.loaded["version"] == instance.version
    assert lease.workflow == (instance.workflow_name, instance.workflow_version)

    # Someone changes the instance after the lease read it: the worker's first attempt conflicts
    # on the version, the retry loads the stored instance instead of the row read with the lease.
    async with tenants.transaction(tenant) as session:
        await session.execute(
            WorkflowInstanceModel.__table__.update()  # type: ignore[attr-defined]
            .where(WorkflowInstanceModel.id == instance.id)
            .values(version=WorkflowInstanceModel.version + 1)
        )
    done = await engine.resume(instance.id, lease=lease)
    assert done.status is WorkflowStatus.COMPLETED
    assert await _count(tenants, tenant, StepExecutionModel, instance_id=instance.id) == 3
    assert engine.persistence.preloaded == {}  # nothing left behind
