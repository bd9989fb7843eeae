"""Flowdeck's store: SQLAlchemy models, repositories, the SQL instance store, tenancy (RLS).

Import everything from here::

    from flowdeck_store import PersistentExecutionEngine, create_engine, session_factory
"""

from __future__ import annotations

from flowdeck_store.base import AuditedBase, Base, TenantOwned, metadata
from flowdeck_store.batching import BatchLimits
from flowdeck_store.database import create_engine, session_factory
from flowdeck_store.definitions import definition_document
from flowdeck_store.durable import DurableInstanceStore
from flowdeck_store.engine import PersistentExecutionEngine
from flowdeck_store.exceptions import (
    InvalidTenantError,
    StaleLeaseError,
    StoreError,
    TenantMismatchError,
    TenantNotBoundError,
    UnknownTenantError,
)
from flowdeck_store.leases import Lease, extend_lease, release_lease, take_lease, take_leases
from flowdeck_store.models import (
    CallbackTokenModel,
    HumanTaskModel,
    IdempotencyKeyModel,
    OutboxEventModel,
    PendingWorkModel,
    StepExecutionModel,
    TaskCandidateModel,
    TenantModel,
    TenantStatus,
    TimerModel,
    WebhookDeliveryModel,
    WebhookSubscriptionModel,
    WorkflowDefinitionModel,
    WorkflowInstanceModel,
)
from flowdeck_store.repositories import (
    HumanTaskRepository,
    StepExecutionRepository,
    TenantRepository,
    WorkflowDefinitionRepository,
    WorkflowInstanceRepository,
)
from flowdeck_store.scans import (
    DueItem,
    DueTimer,
    claim_due,
    drop_timer,
    instance_seq,
    instance_tenant,
    load_timer,
    prune,
)
from flowdeck_store.store import SqlInstanceStore
from flowdeck_store.tenancy import (
    TenantSession,
    as_tenant_id,
    bind_tenant,
    current_tenant,
    guard_sessions,
    session_tenant,
    tenant_scope,
)

__all__ = [
    "AuditedBase",
    "Base",
    "BatchLimits",
    "CallbackTokenModel",
    "DueItem",
    "DueTimer",
    "DurableInstanceStore",
    "HumanTaskModel",
    "HumanTaskRepository",
    "IdempotencyKeyModel",
    "InvalidTenantError",
    "Lease",
    "OutboxEventModel",
    "PendingWorkModel",
    "PersistentExecutionEngine",
    "SqlInstanceStore",
    "StaleLeaseError",
    "StepExecutionModel",
    "StepExecutionRepository",
    "StoreError",
    "TaskCandidateModel",
    "TenantMismatchError",
    "TenantModel",
    "TenantNotBoundError",
    "TenantOwned",
    "TenantRepository",
    "TenantSession",
    "TenantStatus",
    "TimerModel",
    "UnknownTenantError",
    "WebhookDeliveryModel",
    "WebhookSubscriptionModel",
    "WorkflowDefinitionModel",
    "WorkflowDefinitionRepository",
    "WorkflowInstanceModel",
    "WorkflowInstanceRepository",
    "as_tenant_id",
    "bind_tenant",
    "claim_due",
    "create_engine",
    "current_tenant",
    "definition_document",
    "drop_timer",
    "extend_lease",
    "guard_sessions",
    "instance_seq",
    "instance_tenant",
    "load_timer",
    "metadata",
    "prune",
    "release_lease",
    "session_factory",
    "session_tenant",
    "take_lease",
    "take_leases",
    "tenant_scope",
]
