"""The store's exceptions: one root carrying ``detail``, named subclasses carrying the facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowdeck_engine import WorkflowsError

if TYPE_CHECKING:
    from uuid import UUID


class StoreError(WorkflowsError):
    """Root of the store's errors (a :class:`~flowdeck_engine.WorkflowsError`, so engine callers catch it)."""


class TenantNotBoundError(StoreError):
    """A transaction was about to begin with no tenant bound: refused (fail closed)."""

    def __init__(self) -> None:
        super().__init__("no tenant is bound to this session: refusing to begin a transaction")


class InvalidTenantError(StoreError, ValueError):
    """A tenant id that is not a UUID."""

    def __init__(self, value: object) -> None:
        super().__init__(f"tenant id {value!r} is not a UUID")
        self.value = value


class TenantMismatchError(StoreError):
    """A session already in a transaction for one tenant was asked to work for another."""

    def __init__(self, bound: UUID | None, wanted: UUID) -> None:
        super().__init__(f"session is bound to tenant {bound}, not {wanted}")
        self.bound = bound
        self.wanted = wanted


class UnknownTenantError(StoreError, LookupError):
    """No tenant has this id (or it cannot be used)."""

    def __init__(self, tenant_id: UUID) -> None:
        super().__init__(f"tenant {tenant_id} does not exist")
        self.tenant_id = tenant_id


class StaleLeaseError(StoreError):
    """A worker's lease on an instance's pending work no longer holds: its change was not written.

    Another worker took the work over (the lease expired) or already committed it. Not retryable:
    the current holder carries on.
    """

    def __init__(self, instance_id: UUID) -> None:
        super().__init__(f"the lease on instance {instance_id} no longer holds: nothing was written")
        self.instance_id = instance_id
