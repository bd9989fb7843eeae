"""Tenant binding: every transaction runs for exactly one tenant, or does not run.

A session's tenant is ``session.info["flowdeck.tenant_id"]`` or, when that is unset, the tenant of
the current :func:`tenant_scope`. The ``after_begin`` hook installed by :func:`guard_sessions`
raises :class:`TenantNotBoundError` when there is none (fail closed) and, on PostgreSQL, runs
``SELECT set_config('app.tenant_id', :t, true)``: transaction-local, so nothing outlives the
transaction on a pooled connection (never a session-level ``SET``). Row-level security keys on it.

With asyncpg the setting rides with the transaction's ``BEGIN`` (:class:`TenantConnection`): the
two go as one simple query, one round trip fewer for every transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from flowdeck_store.exceptions import InvalidTenantError, TenantNotBoundError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import SessionTransaction

TENANT_KEY = "flowdeck.tenant_id"
"""The ``session.info`` key that holds a session's tenant."""
SETTING = "app.tenant_id"
"""The PostgreSQL setting that row-level security policies read."""

_scope: ContextVar[UUID | None] = ContextVar("flowdeck_tenant", default=None)


def as_tenant_id(value: UUID | str) -> UUID:
    """``value`` as a tenant UUID; raises :class:`InvalidTenantError` for anything else."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidTenantError(value) from None


def current_tenant() -> UUID | None:
    """The tenant of the innermost :func:`tenant_scope`, if any."""
    return _scope.get()


@contextmanager
def tenant_scope(tenant_id: UUID | str) -> Iterator[UUID]:
    """Bind ``tenant_id`` to the sessions used inside this block (this task and its children)."""
    token = _scope.set(as_tenant_id(tenant_id))
    try:
        yield _scope.get()  # type: ignore[misc]
    finally:
        _scope.reset(token)


def bind_tenant(session: AsyncSession | Session, tenant_id: UUID | str) -> UUID:
    """Bind ``tenant_id`` to ``session`` for its next transactions."""
    tenant = as_tenant_id(tenant_id)
    session.info[TENANT_KEY] = tenant
    return tenant


def session_tenant(session: AsyncSession | Session) -> UUID | None:
    """The tenant ``session`` works for: its own binding, else the current scope's."""
    tenant: UUID | None = session.info.get(TENANT_KEY)
    return tenant if tenant is not None else _scope.get()


class TenantConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that sends a transaction's tenant setting with its ``BEGIN``.

    SQLAlchemy's asyncpg adapter sends ``BEGIN`` just before a transaction's first statement;
    :func:`_after_begin` leaves the tenant here instead of running ``set_config`` itself, and the
    ``BEGIN`` goes out as ``BEGIN; SELECT set_config(...)`` in one simple query. Any call takes
    the tenant away, and only a ``BEGIN`` uses it; one left unused (a transaction that ran no
    statement) is dropped when that transaction ends and when the connection goes back to the
    pool, so it can never reach another transaction. Without a tenant a transaction sees no rows.
    """

    __slots__ = ("pending_tenant",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending_tenant: UUID | None = None

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109 (asyncpg's signature)
        tenant, self.pending_tenant = self.pending_tenant, None
        if tenant is not None and not args and query.startswith("BEGIN"):
            # a UUID's text is hex digits and dashes: nothing to quote
            query = f"{query} SELECT set_config('{SETTING}', '{tenant}', true);"
        status: str = await super().execute(query, *args, timeout=timeout)
        return status


def _after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    tenant = session_tenant(session)
    if tenant is None:
        raise TenantNotBoundError
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        if isinstance(driver, TenantConnection) and not driver.is_in_transaction():
            driver.pending_tenant = as_tenant_id(tenant)  # sent with the BEGIN (see TenantConnection)
            return
        connection.execute(select(func.set_config(SETTING, str(tenant), True)))


async def asyncpg_connection(session: AsyncSession) -> Any:
    """``session``'s asyncpg connection (an ``asyncpg.Connection``) with its transaction begun (so
    its tenant is bound), for statements sent past SQLAlchemy; None on another database or driver.
    (On an AUTOCOMMIT engine no transaction begins and no tenant is bound: RLS shows no rows.)"""
    connection = await session.connection()
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "asyncpg":
        return None
    adapter: Any = (await connection.get_raw_connection()).dbapi_connection
    if not adapter._started:  # SQLAlchemy's adapter sends BEGIN lazily, before its first statement
        async with adapter._execute_mutex:
            dbapi_error = connection.dialect.loaded_dbapi.Error
            try:
                await adapter._start_transaction()
            except dbapi_error as exc:  # raised as SQLAlchemy raises it for its own statements
                raise DBAPIError.instance("BEGIN", None, exc, dbapi_error, dialect=connection.dialect) from exc
    return adapter.driver_connection


def drop_pending_tenant(dbapi_connection: Any, *_: Any) -> None:
    """A pool ``checkin`` hook: a connection back in the pool carries no tenant for a next BEGIN."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if isinstance(driver, TenantConnection):
        driver.pending_tenant = None


def end_pending_tenant(connection: Connection) -> None:
    """An engine ``commit`` / ``rollback`` hook: a transaction that ended without a statement
    leaves no tenant behind on a connection that stays checked out (bound to a session, say)."""
    if not connection.closed and not connection.invalidated:
        drop_pending_tenant(connection.connection.dbapi_connection)


class TenantSession(Session):
    """A session whose every transaction is bound to a tenant (see the module docs)."""


event.listen(TenantSession, "after_begin", _after_begin)


def guard_sessions(target: Any) -> None:
    """Install the tenant hook on ``target``: a ``Session`` subclass or one session instance."""
    if isinstance(target, TenantSession) or (isinstance(target, type) and issubclass(target, TenantSession)):
        return
    if not event.contains(target, "after_begin", _after_begin):
        event.listen(target, "after_begin", _after_begin)


def is_guarded(session: Session) -> bool:
    """Whether ``session``'s transactions go through the tenant hook."""
    return isinstance(session, TenantSession) or event.contains(session, "after_begin", _after_begin)
