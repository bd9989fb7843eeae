"""Tenant binding: every transaction runs for exactly one tenant, or does not run.

A session's tenant is ``session.info["flowdeck.tenant_id"]`` or, when that is unset, the tenant of
the current :func:`tenant_scope`. The ``after_begin`` hook installed by :func:`guard_sessions`
raises :class:`TenantNotBoundError` when there is none (fail closed) and, on PostgreSQL, runs
``SELECT set_config('app.tenant_id', :t, true)``: transaction-local, so nothing outlives the
transaction on a pooled connection (never a session-level ``SET``). Row-level security keys on it.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import event, func, select
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


def _after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    tenant = session_tenant(session)
    if tenant is None:
        raise TenantNotBoundError
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.set_config(SETTING, str(tenant), True)))


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
