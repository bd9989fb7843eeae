"""Running one instance's due machine steps under a lease: what a worker's job does.

1. Take the lease on the instance's due pending work, under the job's tenant (row-level security
   applies: another tenant's rows are invisible); the leases of concurrent jobs of one tenant are
   taken in one statement.
2. No lease: either nothing is due (a duplicate or late job: a no-op), another worker holds it
   (it carries on), or the instance is not the job's tenant's: told apart by
   ``flowdeck_instance_tenant``, a mismatch is a security event and fails the job.
3. Resume the instance through the tenant's engine: every consecutive machine step that is due
   runs, and the result commits in one transaction only while the lease holds (a worker paused
   past its lease commits nothing). A heartbeat extends the lease while the steps run.
4. Give back what is left of the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import uuid
from functools import partial
from typing import TYPE_CHECKING, Final

from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from flowdeck_engine import InstanceNotFoundError, WorkflowNotFoundError, WorkflowsError
from flowdeck_engine.kernel import RUN
from flowdeck_store import StaleLeaseError, extend_lease, instance_tenant, release_lease, take_leases
from flowdeck_store.batching import Batcher, BatchLimits, by_tenant

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractContextManager
    from uuid import UUID

    from opentelemetry.trace import Tracer

    from flowdeck_runtime.tenants import Tenants
    from flowdeck_store import Lease

log = logging.getLogger(__name__)
security = logging.getLogger("flowdeck.security")

IDLE: Final = "idle"
DONE: Final = "done"
STALE: Final = "stale"
GONE: Final = "gone"


class TenantMismatchError(WorkflowsError):
    """A job named a tenant that does not own its instance: refused, never retried."""

    non_retryable = True

    def __init__(self, job_tenant: UUID, instance_id: UUID) -> None:
        super().__init__(f"job for tenant {job_tenant} names instance {instance_id} of another tenant")
        self.job_tenant = job_tenant
        self.instance_id = instance_id


def _instance_of(wanted: tuple[UUID, str]) -> UUID:
    return wanted[0]


def worker_identity() -> str:
    """This process's name in lease owners: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class InstanceRunner:
    """Runs instances' due machine steps under leases; remembers the leases it holds."""

    def __init__(
        self, tenants: Tenants, *, lease_seconds: float, heartbeat_seconds: float, tracer: Tracer | None = None
    ) -> None:
        self.tenants = tenants
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.tracer = tracer
        self.identity = worker_identity()
        self._jobs = itertools.count(1)  # a lease owner is this process's identity and the job's number
        self.held: dict[UUID, tuple[UUID, Lease]] = {}
        # the leases that concurrent jobs of a tenant ask for are taken together: one statement
        self._leases: Callable[[UUID], Batcher[tuple[UUID, str], Lease | None]] = by_tenant(
            lambda tenant: Batcher(partial(self._take, tenant), _instance_of, BatchLimits())
        )

    async def _take(self, tenant: UUID, wanted: Sequence[tuple[UUID, str]]) -> list[Lease | None]:
        async with self.tenants.transaction(tenant) as session:  # in instance order: no lock cycles
            leases = await take_leases(session, tenant, sorted(wanted), self.lease_seconds, load=True)
        # Held from here. A job cancelled meanwhile never sees its lease: it expires after
        # lease_seconds (the reconciler re-sends the work), or release_all gives it back at shutdown.
        for instance_id, lease in leases.items():
            self.held[instance_id] = (tenant, lease)
        return [leases.get(instance_id) for instance_id, _ in wanted]

    def job_span(
        self, carrier: dict[str, str] | None, *, tenant_id: str, instance_id: str, seq: int
    ) -> AbstractContextManager[object]:
        """``job.run_instance``, a child of the trace context the job carries (nothing without a tracer)."""
        if self.tracer is None:
            return contextlib.nullcontext()
        parent = propagate.extract(carrier) if carrier else None
        attributes: dict[str, str | int] = {
            "flowdeck.tenant": tenant_id,
            "flowdeck.instance": instance_id,
            "flowdeck.seq": seq,
        }
        return self.tracer.start_as_current_span(
            "job.run_instance", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )

    async def run(self, tenant: UUID, instance_id: UUID, beat: Callable[[], Awaitable[object]] | None = None) -> str:
        """Run what is due of ``instance_id`` for ``tenant``: ``done``, ``idle``, ``stale`` or ``gone``."""
        owner = f"{self.identity}:{next(self._jobs)}"
        lease = await self._leases(tenant).submit((instance_id, owner))
        if lease is None:
            return await self._nothing_leased(tenant, instance_id)
        heart = asyncio.create_task(self._heartbeat(tenant, lease, beat))
        remaining = True
        try:
            await self.tenants.definition(tenant, *lease.workflow)  # compiled once per tenant and version
            instance = await self.tenants.engine(tenant).resume(instance_id, lease=lease)
            remaining = any(
                act.kind == RUN and lease.covers(name, act.attempt) for name, act in instance.state.active.items()
            )
            return DONE
        except StaleLeaseError:
            log.warning("lease on instance %s was lost before the commit: nothing written", instance_id)
            remaining = False
            return STALE
        except (InstanceNotFoundError, WorkflowNotFoundError):
            return GONE
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart
            self.held.pop(instance_id, None)
            if remaining:
                await asyncio.shield(self._release(tenant, lease))

    async def release_all(self) -> None:
        """Give back every lease still held (at shutdown)."""
        for tenant, lease in list(self.held.values()):
            await self._release(tenant, lease)
        self.held.clear()

    async def _nothing_leased(self, tenant: UUID, instance_id: UUID) -> str:
        async with self.tenants.transaction(tenant) as session:
            owner = await instance_tenant(session, instance_id)
        if owner is None:
            return GONE
        if owner != tenant:
            security.error(
                "security event: job for tenant %s named instance %s of another tenant; refused",
                tenant,
                instance_id,
                extra={"event": "tenant_mismatch", "job_tenant": str(tenant), "instance_id": str(instance_id)},
            )
            raise TenantMismatchError(tenant, instance_id)
        return IDLE

    async def _heartbeat(self, tenant: UUID, lease: Lease, beat: Callable[[], Awaitable[object]] | None) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                async with self.tenants.transaction(tenant) as session:
                    kept = await extend_lease(session, tenant, lease, self.lease_seconds)
                if not kept:
                    log.warning("lease on instance %s was taken over while its steps ran", lease.instance_id)
                    return
                if beat is not None:
                    await beat()
            except Exception:
                log.exception("heartbeat of instance %s failed", lease.instance_id)

    async def _release(self, tenant: UUID, lease: Lease) -> None:
        try:
            async with self.tenants.transaction(tenant) as session:
                await release_lease(session, tenant, lease)
        except Exception:
            log.exception("could not release the lease on instance %s (it expires)", lease.instance_id)


__all__ = ["DONE", "GONE", "IDLE", "STALE", "InstanceRunner", "TenantMismatchError", "worker_identity"]
