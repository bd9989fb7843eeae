"""Leases on an instance's pending work: which worker runs its due machine steps, and until when.

A worker takes the lease on every due, free (or expired) ``workflow_pending_work`` row of an
instance in one ``UPDATE ... RETURNING``: its owner id, an expiry, and each row's ``fence``
bumped. The commit of what it ran is checked against the lease in the same transaction (see
:class:`~flowdeck_store.durable.DurableInstanceStore`): if another worker took the rows over, or
committed them, the late worker commits nothing. Rows are compared on the database clock
(on SQLite, the embedded mode's one process, on this process's clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, func, or_, select, update

from flowdeck_store.models import PendingWorkModel, WorkflowInstanceModel
from flowdeck_store.store import LOAD_COLUMNS
from flowdeck_store.tenancy import asyncpg_connection

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

_WORK = cast("Table", PendingWorkModel.__table__)
_INSTANCES = cast("Table", WorkflowInstanceModel.__table__)


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's hold on an instance's pending work: ``fences`` maps (step, attempt) to its fence.

    ``workflow`` is the instance's (name, version): its definition, ready before the instance loads.
    """

    instance_id: UUID
    owner: str
    fences: dict[tuple[str, int], int]
    workflow: tuple[str, str] = ("", "")
    loaded: Any = field(default=None, compare=False, repr=False)
    """The instance's stored row as the lease was taken (a record of the store's load query,
    history included), when it was read with the lease: its first load needs no round trip."""

    def covers(self, step: str, attempt: int) -> bool:
        """Whether this lease holds the pending work of ``step``'s ``attempt``."""
        return (step, attempt) in self.fences


def _now(session: AsyncSession) -> Any:
    """The database's clock on PostgreSQL; this process's on SQLite (one process there)."""
    return func.now() if session.get_bind().dialect.name == "postgresql" else datetime.now(UTC)


_TAKE_SQL = (
    "UPDATE workflow_pending_work AS w SET lease_owner = x.owner, "
    "lease_expires_at = now() + make_interval(secs => $3), fence = w.fence + 1, updated_at = now() "
    "FROM unnest($2::uuid[], $4::text[]) AS x(instance_id, owner), workflow_instances AS i "
    "WHERE w.tenant_id = $1 AND w.instance_id = ANY($2::uuid[]) AND w.instance_id = x.instance_id "
    "AND (w.not_before IS NULL OR w.not_before <= now()) AND (w.lease_owner IS NULL OR w.lease_expires_at <= now()) "
    "AND i.tenant_id = $1 AND i.id = w.instance_id "
    "RETURNING w.instance_id, x.owner, w.step_name, w.attempt, w.fence, i.workflow_name, i.workflow_version"
)
"""Leases for several instances in one statement (PostgreSQL): each instance's rows get its owner."""

_TAKE_AND_LOAD_SQL = _TAKE_SQL + f", {LOAD_COLUMNS.format(w='i')}"
""":data:`_TAKE_SQL` that also returns each instance's row as the store loads it (history included)."""

_STALE_SQL = (
    "SELECT instance_id, step_name, attempt, fence FROM workflow_pending_work "
    "WHERE tenant_id = $1 AND instance_id = ANY($2::uuid[]) AND lease_owner = ANY($3::text[]) FOR UPDATE"
)
"""The rows the leases hold, locked (:func:`stale_leases` on PostgreSQL)."""


async def take_leases(
    session: AsyncSession, tenant_id: UUID, wanted: Sequence[tuple[UUID, str]], seconds: float, *, load: bool = False
) -> dict[UUID, Lease]:
    """Lease each instance's due pending work that no live lease holds, for its owner
    (``wanted``: (instance, owner) pairs, one per instance); the leases taken, by instance.
    With ``load`` (PostgreSQL), each lease also carries its instance's row, read in the same
    statement (:attr:`Lease.loaded`)."""
    raw = await asyncpg_connection(session)
    if raw is None:
        found = [await _take_portable(session, tenant_id, iid, owner, seconds) for iid, owner in wanted]
        return {lease.instance_id: lease for lease in found if lease is not None}
    ids, owners = [iid for iid, _ in wanted], [owner for _, owner in wanted]
    leases: dict[UUID, Lease] = {}
    statement = _TAKE_AND_LOAD_SQL if load else _TAKE_SQL
    for row in await raw.fetch(statement, tenant_id, ids, float(seconds), owners):
        iid = row["instance_id"]
        lease = leases.get(iid)
        if lease is None:
            workflow = (row["workflow_name"], row["workflow_version"])
            lease = leases[iid] = Lease(iid, row["owner"], {}, workflow, row if load else None)
        lease.fences[(row["step_name"], row["attempt"])] = row["fence"]
    return leases


async def take_lease(
    session: AsyncSession, tenant_id: UUID, instance_id: UUID, owner: str, seconds: float
) -> Lease | None:
    """Lease the instance's due pending work that no live lease holds; None when there is none."""
    return (await take_leases(session, tenant_id, [(instance_id, owner)], seconds)).get(instance_id)


async def _take_portable(
    session: AsyncSession, tenant_id: UUID, instance_id: UUID, owner: str, seconds: float
) -> Lease | None:
    now = _now(session)
    c = _WORK.c
    i = _INSTANCES.c
    rows = (
        await session.execute(
            update(_WORK)
            .where(
                c.tenant_id == tenant_id,
                c.instance_id == instance_id,
                or_(c.not_before.is_(None), c.not_before <= now),
                or_(c.lease_owner.is_(None), c.lease_expires_at <= now),
            )
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=seconds),
                fence=c.fence + 1,
                updated_at=now,
            )
            .returning(c.step_name, c.attempt, c.fence)
        )
    ).all()
    if not rows:
        return None
    found = (
        await session.execute(
            select(i.workflow_name, i.workflow_version).where(i.tenant_id == tenant_id, i.id == instance_id)
        )
    ).one()
    return Lease(instance_id, owner, {(row[0], row[1]): row[2] for row in rows}, (found[0], found[1]))


async def extend_lease(session: AsyncSession, tenant_id: UUID, lease: Lease, seconds: float) -> bool:
    """Push the lease's expiry ``seconds`` ahead; False when it was lost (taken over, committed)."""
    c = _WORK.c
    now = _now(session)
    result = await session.execute(
        update(_WORK)
        .where(c.tenant_id == tenant_id, c.instance_id == lease.instance_id, c.lease_owner == lease.owner)
        .values(lease_expires_at=now + timedelta(seconds=seconds), updated_at=now)
        .returning(c.id)
    )
    return bool(result.all())


async def release_lease(session: AsyncSession, tenant_id: UUID, lease: Lease) -> None:
    """Give back what is left of the lease (rows its commit did not remove)."""
    c = _WORK.c
    await session.execute(
        update(_WORK)
        .where(c.tenant_id == tenant_id, c.instance_id == lease.instance_id, c.lease_owner == lease.owner)
        .values(lease_owner=None, lease_expires_at=None, updated_at=_now(session))
    )


async def stale_leases(session: AsyncSession, tenant_id: UUID, leases: Collection[Lease]) -> set[UUID]:
    """The instances whose lease no longer holds, locking the rows of those that do.

    A lease holds while every row it took still carries its owner and fence. The rows are locked
    (``FOR UPDATE``) until the transaction ends, so no takeover slips in before the commit.
    """
    if not leases:
        return set()
    c = _WORK.c
    owners = [lease.owner for lease in leases]
    raw = await asyncpg_connection(session)
    rows: Sequence[Any]
    if raw is not None:
        rows = await raw.fetch(_STALE_SQL, tenant_id, [lease.instance_id for lease in leases], owners)
    else:
        rows = (
            await session.execute(
                select(c.instance_id, c.step_name, c.attempt, c.fence)
                .where(c.tenant_id == tenant_id, c.lease_owner.in_(owners))
                .with_for_update()
            )
        ).all()
    held: dict[UUID, set[tuple[str, int, int]]] = {}
    for instance_id, step, attempt, fence in rows:
        held.setdefault(instance_id, set()).add((step, attempt, fence))
    stale: set[UUID] = set()
    for lease in leases:
        mine = {(step, attempt, fence) for (step, attempt), fence in lease.fences.items()}
        if not mine <= held.get(lease.instance_id, set()):
            stale.add(lease.instance_id)
    return stale


__all__ = ["Lease", "extend_lease", "release_lease", "stale_leases", "take_lease", "take_leases"]
