"""The services' PostgreSQL connections plan every statement for its own arguments, except in a
transaction that writes (after the write).

asyncpg keeps statements prepared per pooled connection; a generic plan PostgreSQL caches for one
(after five executions) would outlive the table sizes it was picked for.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from flowdeck_store import PersistentExecutionEngine, bind_tenant, create_engine, session_factory
from flowdeck_store.tenancy import asyncpg_connection
from tests.integration.conftest import Database, NewTenant
from tests.integration.workflows import registry

Sessions = async_sessionmaker[AsyncSession]


async def test_statements_are_planned_per_execution(database: Database) -> None:
    engine = create_engine(database.app_url)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SHOW plan_cache_mode"))).scalar_one() == "force_custom_plan"
    finally:
        await engine.dispose()


async def test_a_connection_lost_before_begin_is_a_database_error(database: Database) -> None:
    """The BEGIN that raw statements start themselves fails as SQLAlchemy's own statements do
    (a DBAPIError: the API answers 503), not with the driver adapter's bare exception (a 500)."""
    engine = create_engine(database.app_url, poolclass=NullPool)
    admin = create_engine(database.admin_url, poolclass=NullPool)
    try:
        async with session_factory(engine)() as session:
            bind_tenant(session, uuid.uuid4())
            async with session.begin():
                connection = await session.connection()  # connected; BEGIN waits for a statement
                raw = await connection.get_raw_connection()
                pid = raw.dbapi_connection.driver_connection.get_server_pid()
                async with admin.connect() as other:
                    await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                await asyncio.sleep(0.1)
                with pytest.raises(DBAPIError):
                    await asyncpg_connection(session)
    finally:
        await engine.dispose()
        await admin.dispose()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_a_write_lets_its_transaction_keep_generic_plans(sessions: Sessions, new_tenant: NewTenant) -> None:
    """The foreign-key checks of a write are planned once per connection, not per row; the setting
    ends with the transaction (the next one on the same pooled connection plans per execution)."""
    tenant = await new_tenant("plans")
    engine = PersistentExecutionEngine(registry(), sessions, tenant_id=tenant)
    mode = text("SHOW plan_cache_mode")
    async with engine.transaction(tenant) as session:
        assert (await session.execute(mode)).scalar_one() == "force_custom_plan"
        await engine.start_workflow("machines", {})
        assert (await session.execute(mode)).scalar_one() == "auto"
    async with sessions() as session:
        bind_tenant(session, tenant)
        async with session.begin():
            assert (await session.execute(mode)).scalar_one() == "force_custom_plan"
