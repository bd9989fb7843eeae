"""The SQL instance store with what running outside the request path needs: leases, escalations.

:class:`DurableInstanceStore` writes each batch of changes as :class:`SqlInstanceStore` does, and
in the same transaction: first checks the leases that workers registered for the instances being
written (a change whose lease no longer holds is dropped, and its caller gets
:class:`~flowdeck_store.exceptions.StaleLeaseError`: a paused or late worker commits nothing),
writes task deadline timers along with the changes and then reassignments
(:mod:`flowdeck_store.escalations`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowdeck_engine import ConcurrencyError
from flowdeck_store.escalations import escalation_rows, write_reassignments
from flowdeck_store.exceptions import StaleLeaseError
from flowdeck_store.leases import stale_leases
from flowdeck_store.store import SqlInstanceStore
from flowdeck_store.writer import write_changes

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from flowdeck_engine import WorkflowRegistry
    from flowdeck_store.batching import BatchLimits
    from flowdeck_store.changes import Change
    from flowdeck_store.leases import Lease


class DurableInstanceStore(SqlInstanceStore):
    """:class:`SqlInstanceStore` plus lease-fenced commits and escalation timers."""

    def __init__(
        self,
        registry: WorkflowRegistry,
        sessions: AsyncSession | async_sessionmaker[AsyncSession],
        *,
        tenant_id: UUID | str | None = None,
        batch_limits: BatchLimits | None = None,
    ) -> None:
        super().__init__(registry, sessions, tenant_id=tenant_id, batch_limits=batch_limits)
        self.leases: dict[UUID, Lease] = {}
        """Leases the worker in this process holds, by instance: their commits are checked."""

    def hold(self, lease: Lease) -> None:
        """Check every write of ``lease``'s instance against it until :meth:`drop` (and load the
        instance from the row read with the lease, when it was)."""
        self.leases[lease.instance_id] = lease
        if lease.loaded is not None:
            self.preloaded[lease.instance_id] = lease.loaded

    def drop(self, lease: Lease) -> None:
        """Stop checking writes of ``lease``'s instance against it."""
        if self.leases.get(lease.instance_id) is lease:
            del self.leases[lease.instance_id]
        if lease.loaded is not None and self.preloaded.get(lease.instance_id) is lease.loaded:
            del self.preloaded[lease.instance_id]

    async def _write_batch(self, tenant: UUID, changes: Sequence[Change]) -> list[BaseException | None]:
        """Write ``changes`` in one transaction; per change None or the error that kept it out."""
        held = [lease for c in changes if (lease := self.leases.get(c.instance.id)) is not None]
        now = self._now()
        async with self.transaction(tenant) as session:
            stale = await stale_leases(session, tenant, held) if held else set()
            live = [c for c in changes if c.instance.id not in stale]
            deadlines = escalation_rows(live, now)  # written with the changes, fenced as they are
            failed = (
                await write_changes(session, tenant, live, now, timers=(deadlines.new, deadlines.timers_gone()))
                if live
                else set()
            )
            reassign = [r for r in deadlines.reassign if r[0] not in failed]
            if reassign:
                await write_reassignments(session, tenant, reassign, now)
        out: list[BaseException | None] = []
        for change in changes:
            iid = change.instance.id
            if iid in stale:
                out.append(StaleLeaseError(iid))
            elif iid in failed:
                out.append(ConcurrencyError(iid, change.expected_version))
            else:
                out.append(None)
        return out


__all__ = ["DurableInstanceStore"]
