"""Engines and session factories for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from flowdeck_store.tenancy import TenantConnection, TenantSession, drop_pending_tenant, end_pending_tenant

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _drop_closed(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry, _proxy: object) -> None:
    """A pooled connection whose server end went away (PostgreSQL restarted, its backend
    terminated) is replaced before use, without pre-ping's three round trips per checkout."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the pooled connection was closed by the server")


CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}
"""Every execution of a prepared statement is planned for its own arguments. The hot statements
take arrays of keys and run against tables that grow from nothing (a new deployment, a new
tenant's first minutes): a generic plan picked while a table was small sticks to the pooled
connection's prepared statement and walks the whole tenant for every key once the table has
grown (measured: the worker's lease statement 5.1 ms a call on a generic plan, 0.3 ms planned
per call). Planning these statements costs far less than one bad plan. A transaction that writes
lets its foreign-key checks keep their plans (:data:`flowdeck_store.writer.GENERIC_PLANS`)."""


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``.

    PostgreSQL (asyncpg): a pooled connection that the server closed is discarded at checkout
    (a restarted PostgreSQL costs no failed request once its connections' ends are seen closed;
    pass ``pool_pre_ping=True`` to also catch silently dead ones, at three round trips per
    checkout). Its connections send a transaction's tenant with its ``BEGIN``
    (:class:`~flowdeck_store.tenancy.TenantConnection`) and plan each statement for its arguments
    (:data:`CUSTOM_PLANS`). SQLite: foreign keys, WAL and a busy timeout.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql+asyncpg"):
        connect_args = {"connection_class": TenantConnection, **kwargs.get("connect_args", {})}
        connect_args["server_settings"] = {**CUSTOM_PLANS, **connect_args.get("server_settings", {})}
        kwargs["connect_args"] = connect_args
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    event.listen(engine.sync_engine, "checkin", drop_pending_tenant)
    event.listen(engine.sync_engine, "commit", end_pending_tenant)
    event.listen(engine.sync_engine, "rollback", end_pending_tenant)
    return engine


def session_factory(engine: AsyncEngine, **kwargs: Any) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to ``engine`` that refuse to begin a transaction without a tenant."""
    kwargs.setdefault("expire_on_commit", False)
    return async_sessionmaker(engine, sync_session_class=TenantSession, **kwargs)
