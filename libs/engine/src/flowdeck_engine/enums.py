"""Enumerations shared by definitions, instances and their records."""

from __future__ import annotations

from enum import StrEnum


class StepType(StrEnum):
    """Classification of step types."""

    MACHINE = "machine"
    """Automated execution."""
    HUMAN = "human"
    """Requires user interaction."""
    WEBHOOK = "webhook"
    """Waits for an external callback."""
    TIMER = "timer"
    """Waits for a time condition."""
    GATEWAY = "gateway"
    """Decision/branching point."""


class WorkflowStatus(StrEnum):
    """Status of a workflow instance."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        """Whether no further step will ever run (unless a failed instance is retried)."""
        return self in _FINAL


_FINAL = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELED})


class StepStatus(StrEnum):
    """Status of one execution of a step."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"


class GatewayMode(StrEnum):
    """How a gateway chooses among its outgoing edges."""

    EXCLUSIVE = "exclusive"
    """The first edge (in edge order) whose condition holds, else the default edge."""
    INCLUSIVE = "inclusive"
    """Every edge whose condition holds, else the default edge."""


class TaskStatus(StrEnum):
    """Status of a human task."""

    PENDING = "pending"
    COMPLETED = "completed"
    CANCELED = "canceled"
