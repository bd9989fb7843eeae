"""The scheduler's and worker's cross-tenant scans, and the per-tenant reads that follow them.

Across tenants only the SECURITY DEFINER functions of migration 0004 are called: they return
``(tenant_id, id)`` pairs (and claim them). Every item is then read and handled in a
transaction bound to its own tenant, where row-level security applies as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from sqlalchemy import Table, delete, select, text

from flowdeck_store.models import TimerModel, WorkflowInstanceModel

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

TIMER: Final = "timer"
WORK: Final = "work"
_TIMERS = cast("Table", TimerModel.__table__)
_INSTANCES = cast("Table", WorkflowInstanceModel.__table__)
_CLAIM = text("SELECT kind, tenant_id, id FROM flowdeck_claim_due(:limit, :claim, :quiet)")
_INSTANCE_TENANT = text("SELECT flowdeck_instance_tenant(:id)")


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
    rows = await connection.execute(_CLAIM, {"limit": limit, "claim": claim_seconds, "quiet": quiet_seconds})
    return [DueItem(kind, tenant, item) for kind, tenant, item in rows.all()]


async def instance_tenant(connection: AsyncConnection | AsyncSession, instance_id: UUID) -> UUID | None:
    """The tenant of the instance ``instance_id`` (None when there is no such instance)."""
    found: UUID | None = (await connection.execute(_INSTANCE_TENANT, {"id": instance_id})).scalar_one_or_none()
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
    "TIMER",
    "WORK",
    "DueItem",
    "DueTimer",
    "claim_due",
    "drop_timer",
    "instance_seq",
    "instance_tenant",
    "load_timer",
]
