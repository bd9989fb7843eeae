"""Flowdeck's store: SQLAlchemy models, repositories, the SQL instance store, tenancy (RLS).

Import everything from here::

    from flowdeck_store import PersistentExecutionEngine, create_engine, session_factory
"""

from __future__ import annotations

from flowdeck_store.base import AuditedBase, Base, TenantOwned, metadata
from flowdeck_store.batching import BatchLimits
from flowdeck_store.database import create_engine, session_factory
from flowdeck_store.definitions import definition_document
from flowdeck_store.engine import PersistentExecutionEngine
from flowdeck_store.exceptions import (
    InvalidTenantError,
    StoreError,
    TenantMismatchError,
    TenantNotBoundError,
    UnknownTenantError,
)
from flowdeck_store.models import (
    CallbackTokenModel,
    HumanTaskModel,
    IdempotencyKeyModel,
    OutboxEventModel,
    PendingWorkModel,
    StepExecutionModel,
    TenantModel,
    TenantStatus,
    TimerModel,
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
    "HumanTaskModel",
    "HumanTaskRepository",
    "IdempotencyKeyModel",
    "InvalidTenantError",
    "OutboxEventModel",
    "PendingWorkModel",
    "PersistentExecutionEngine",
    "SqlInstanceStore",
    "StepExecutionModel",
    "StepExecutionRepository",
    "StoreError",
    "TenantMismatchError",
    "TenantModel",
    "TenantNotBoundError",
    "TenantOwned",
    "TenantRepository",
    "TenantSession",
    "TenantStatus",
    "TimerModel",
    "UnknownTenantError",
    "WorkflowDefinitionModel",
    "WorkflowDefinitionRepository",
    "WorkflowInstanceModel",
    "WorkflowInstanceRepository",
    "as_tenant_id",
    "bind_tenant",
    "create_engine",
    "current_tenant",
    "definition_document",
    "guard_sessions",
    "metadata",
    "session_factory",
    "session_tenant",
    "tenant_scope",
]
