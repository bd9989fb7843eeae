"""The seeds' repositories, on advanced-alchemy, keeping to the session's tenant."""

from __future__ import annotations

from flowdeck_store.repositories.base import TenantRepository
from flowdeck_store.repositories.definitions import WorkflowDefinitionRepository
from flowdeck_store.repositories.instances import WorkflowInstanceRepository
from flowdeck_store.repositories.steps import StepExecutionRepository
from flowdeck_store.repositories.tasks import HumanTaskRepository

__all__ = [
    "HumanTaskRepository",
    "StepExecutionRepository",
    "TenantRepository",
    "WorkflowDefinitionRepository",
    "WorkflowInstanceRepository",
]
