"""Flowdeck's tables. Every one but ``tenants`` carries ``tenant_id``; ``tenants`` is keyed by it."""

from __future__ import annotations

from flowdeck_store.models.definitions import WorkflowDefinitionModel
from flowdeck_store.models.idempotency import IdempotencyKeyModel
from flowdeck_store.models.instances import WorkflowInstanceModel
from flowdeck_store.models.outbox import OutboxEventModel
from flowdeck_store.models.steps import StepExecutionModel
from flowdeck_store.models.tasks import HumanTaskModel, TaskCandidateModel
from flowdeck_store.models.tenants import TenantModel, TenantStatus
from flowdeck_store.models.webhooks import WebhookDeliveryModel, WebhookSubscriptionModel
from flowdeck_store.models.work import CallbackTokenModel, PendingWorkModel, TimerModel

__all__ = [
    "CallbackTokenModel",
    "HumanTaskModel",
    "IdempotencyKeyModel",
    "OutboxEventModel",
    "PendingWorkModel",
    "StepExecutionModel",
    "TaskCandidateModel",
    "TenantModel",
    "TenantStatus",
    "TimerModel",
    "WebhookDeliveryModel",
    "WebhookSubscriptionModel",
    "WorkflowDefinitionModel",
    "WorkflowInstanceModel",
]
