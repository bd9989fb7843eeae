"""Tenancy: row-level security alone keeps tenants apart; no tenant, no transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from flowdeck_engine import WorkflowStatus
from flowdeck_store import (
    HumanTaskRepository,
    PersistentExecutionEngine,
    StepExecutionRepository,
    TenantModel,
    TenantNotBoundError,
    TenantSession,
    WorkflowInstanceModel,
    WorkflowInstanceRepository,
    bind_tenant,
    create_engine,
    metadata,
    session_factory,
    tenant_scope,
)
from tests.integration.workflows import registry

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def app_sessions(pg_app_engine: AsyncEngine) -> Sessions:
    return session_factory(pg_app_engine)


@pytest.fixture
async def two_tenants(app_sessions: Sessions) -> AsyncIterator[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """Tenants A and B; A has a waiting instance (with a task and step rows). Yields (a, b, a's instance)."""
    a, b = uuid.uuid4(), uuid.uuid4()
    for tenant, slug in ((a, "a"), (b, "b")):
        async with app_sessions() as session:
            bind_tenant(session, tenant)
            async with session.begin():
                session.add(TenantModel(id=tenant, slug=f"{slug}-{tenant.hex[:6]}", name=slug))
    engine = PersistentExecutionEngine(registry(), app_sessions, tenant_id=a)
    instance = await engine.start_workflow("approval", {"secret": "of A"}, created_by="ann")
    assert instance.status is WorkflowStatus.WAITING
    return a, b, instance.id


async def test_rls_alone_hides_tenant_a_from_b(app_sessions: Sessions, two_tenants: tuple[uuid.UUID, ...]) -> None:
    a, b, instance_id = two_tenants
    async with app_sessions() as session:
        bind_tenant(session, b)
        # the application's filter is off: only row-level security stands between B and A
        instances = WorkflowInstanceRepository(session=session, tenant_filter=False)
        assert await instances.find_running() == []
        assert (await instances.find_by_tenant(a))[1] == 0
        assert await instances.get_one_or_none(WorkflowInstanceModel.id == instance_id) is None
        assert await StepExecutionRepository(session=session, tenant_filter=False).find_by_instance(instance_id) == []
        assert await HumanTaskRepository(session=session, tenant_filter=False).find_pending() == []
        for table in metadata.sorted_tables:  # and raw SQL on every table
            assert (await session.execute(select(func.count()).select_from(table))).scalar_one() == (
                1 if table.name == "tenants" else 0
            ), table.name
    async with app_sessions() as session:  # A itself does see its rows
        bind_tenant(session, a)
        found = await WorkflowInstanceRepository(session=session, tenant_filter=False).find_running()
        assert [i.id for i in found] == [instance_id]


async def test_rls_refuses_writes_into_tenant_a(app_sessions: Sessions, two_tenants: tuple[uuid.UUID, ...]) -> None:
    a, b, instance_id = two_tenants
    async with app_sessions() as session:
        bind_tenant(session, b)
        async with session.begin():
            changed = await session.execute(
                update(WorkflowInstanceModel)
                .where(WorkflowInstanceModel.id == instance_id)
                .values(status="canceled")
                .execution_options(synchronize_session=False)
            )
            assert changed.rowcount == 0  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    async with app_sessions() as session:
        bind_tenant(session, b)
        with pytest.raises(DBAPIError, match="row-level security"):
            async with session.begin():
                await session.execute(
                    insert(WorkflowInstanceModel.__table__).values(
                        id=uuid.uuid4(),
                        tenant_id=a,
                        definition_id=uuid.uuid4(),
                        workflow_name="x",
                        workflow_version="1.0.0",
                        status="running",
                        current_steps=[],
                        context_data={},
                        metadata={},
                        started_at=now,
                        version=1,
                        kernel_state={},
                        created_at=now,
                        updated_at=now,
                    )
                )
    async with app_sessions() as session:
        bind_tenant(session, a)
        row = await session.get(WorkflowInstanceModel, instance_id)
        assert row is not None
        assert row.status == "waiting"


async def test_a_transaction_without_a_tenant_is_refused(app_sessions: Sessions, pg_app_engine: AsyncEngine) -> None:
    async with app_sessions() as session:
        with pytest.raises(TenantNotBoundError):
            await session.execute(select(WorkflowInstanceModel))
    with tenant_scope(uuid.uuid4()):  # a scope binds too
        async with app_sessions() as session:
            assert (await session.execute(select(WorkflowInstanceModel))).all() == []
    # below the hook, the database refuses as well: no setting, no rows, no writes
    async with pg_app_engine.connect() as conn:
        assert (await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))).scalar() in (None, "")
        assert (await conn.execute(text("SELECT count(*) FROM tenants"))).scalar() == 0
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(text("INSERT INTO tenants (id, slug, name, status, created_at, updated_at) "
                                    "VALUES (gen_random_uuid(), 'x', 'x', 'active', now(), now())"))  # fmt: skip


async def test_the_binding_ends_with_the_transaction(truncated: object) -> None:
    from tests.integration.conftest import Database

    assert isinstance(truncated, Database)
    pooled = create_engine(truncated.app_url, pool_size=1, max_overflow=0)  # one connection, reused
    try:
        sessions = session_factory(pooled)
        tenant = uuid.uuid4()
        async with sessions() as session:
            bind_tenant(session, tenant)
            async with session.begin():
                setting = await session.execute(text("SELECT current_setting('app.tenant_id', true)"))
                assert setting.scalar() == str(tenant)
        async with sessions() as session:  # a transaction that ran no statement: its BEGIN never went
            bind_tenant(session, tenant)
            async with session.begin():
                await session.connection()
        async with pooled.connect() as conn:  # the same connection, back from the pool
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            assert (await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))).scalar() == ""
            assert (await conn.execute(text("SELECT count(*) FROM tenants"))).scalar() == 0
        async with pooled.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar() == pid
    finally:
        await pooled.dispose()


async def test_a_transaction_that_ran_nothing_leaves_no_tenant_on_its_connection(pg_app_engine: AsyncEngine) -> None:
    """The tenant rides with the BEGIN (TenantConnection); a session on a connection that stays
    checked out, whose transaction never sent one, leaves nothing for the connection's next user."""
    async with pg_app_engine.connect() as conn:
        session = AsyncSession(bind=conn, sync_session_class=TenantSession)
        bind_tenant(session, uuid.uuid4())
        async with session.begin():
            await session.connection()  # the transaction began (the hook ran); no statement, no BEGIN
        await session.close()
        assert (await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))).scalar() in (None, "")
        await conn.rollback()
