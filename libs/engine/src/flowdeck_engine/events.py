"""Workflow events, the event bus protocol, and an in-memory bus."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flowdeck_engine.context import StepExecution
from flowdeck_engine.enums import StepStatus, StepType, WorkflowStatus
from flowdeck_engine.kernel import Emit, OpenTask, ReassignTask, TaskCompleted

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime
    from uuid import UUID

    from flowdeck_engine.kernel import Event, InstanceState, Transition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowEvent:
    """Something that happened to a workflow instance."""

    instance_id: UUID
    workflow_name: str
    workflow_version: str
    timestamp: datetime
    tenant_id: str | None = None

    @property
    def type(self) -> str:
        """The event's class name, e.g. ``"WorkflowFailed"``."""
        return type(self).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStarted(WorkflowEvent):
    """An instance was started."""

    initial_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCompleted(WorkflowEvent):
    """An instance reached its end."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFailed(WorkflowEvent):
    """An instance failed; ``error`` says why, ``failed_step`` where."""

    error: str
    failed_step: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCanceled(WorkflowEvent):
    """An instance was canceled."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepExecuted(WorkflowEvent):
    """A step execution ended (succeeded, failed, or skipped)."""

    step_name: str
    step_type: StepType
    status: StepStatus
    attempt: int
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanTaskCreated(WorkflowEvent):
    """A human task was opened."""

    step_name: str
    title: str
    assignee: str | None
    candidate_groups: tuple[str, ...]
    due_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanTaskReassigned(WorkflowEvent):
    """An open human task was reassigned (by its escalation, or by someone)."""

    step_name: str
    assignee: str | None
    candidate_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanTaskCompleted(WorkflowEvent):
    """A human task was completed."""

    step_name: str
    user_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomEvent(WorkflowEvent):
    """An event a step published with ``context.emit`` (a document's ``emit`` action)."""

    step_name: str
    event_type: str
    payload: dict[str, Any]


@runtime_checkable
class EventBus(Protocol):
    """Receives every workflow event."""

    async def emit(self, event: WorkflowEvent) -> None:
        """Handle one event. Errors are logged by the engine, never raised into the workflow."""
        ...


class InMemoryEventBus:
    """Keeps every event in ``events`` and calls the handlers subscribed to its type."""

    def __init__(self) -> None:
        self.events: list[WorkflowEvent] = []
        self._handlers: list[tuple[type[WorkflowEvent], Callable[[WorkflowEvent], Awaitable[None]]]] = []

    def subscribe(
        self,
        handler: Callable[[WorkflowEvent], Awaitable[None]],
        event_type: type[WorkflowEvent] = WorkflowEvent,
    ) -> None:
        """Call ``handler`` for every event of ``event_type`` (all events by default)."""
        self._handlers.append((event_type, handler))

    async def emit(self, event: WorkflowEvent) -> None:
        """Record ``event`` and pass it to the matching handlers."""
        self.events.append(event)
        for event_type, handler in self._handlers:
            if isinstance(event, event_type):
                await handler(event)

    def of_type(self, event_type: type[WorkflowEvent]) -> list[WorkflowEvent]:
        """The recorded events of ``event_type``."""
        return [e for e in self.events if isinstance(e, event_type)]


def events_for(
    before: InstanceState | None,
    transition: Transition,
    cause: Event | None,
    *,
    tenant_id: str | None = None,
) -> list[WorkflowEvent]:
    """The public events a transition amounts to (every engine emits the same ones).

    ``transition`` may merge several transitions (a chain of machine steps); ``before`` is the state
    before the first of them (None for a start) and ``cause`` the event that began them.
    """
    s = transition.state
    base: dict[str, Any] = {
        "instance_id": s.instance_id,
        "workflow_name": s.workflow_name,
        "workflow_version": s.workflow_version,
        "tenant_id": tenant_id,
    }
    at = transition.at
    out: list[WorkflowEvent] = []
    if before is None:
        out.append(WorkflowStarted(**base, timestamp=s.started_at, initial_data=dict(s.data)))
    if isinstance(cause, TaskCompleted):
        out.append(HumanTaskCompleted(**base, timestamp=at, step_name=cause.step, user_id=cause.user_id))
    for command in transition.commands:
        if isinstance(command, StepExecution):
            ex = command
            if not ex.attempt:  # a step no live path reached: skipped, never executed
                continue
            out.append(
                StepExecuted(
                    **base,
                    timestamp=at,
                    step_name=ex.step_name,
                    step_type=ex.step_type,
                    status=ex.status,
                    attempt=ex.attempt,
                    error=ex.error,
                )
            )
        elif isinstance(command, OpenTask):
            out.append(
                HumanTaskCreated(
                    **base,
                    timestamp=at,
                    step_name=command.step,
                    title=command.title,
                    assignee=command.assignee,
                    candidate_groups=command.candidate_groups,
                    due_at=command.due_at,
                )
            )
        elif isinstance(command, Emit):
            out.append(
                CustomEvent(
                    **base, timestamp=at, step_name=command.step, event_type=command.event_type, payload=command.payload
                )
            )
        elif isinstance(command, ReassignTask):
            out.append(
                HumanTaskReassigned(
                    **base,
                    timestamp=at,
                    step_name=command.step,
                    assignee=command.assignee,
                    candidate_groups=command.candidate_groups,
                )
            )
    if s.status.is_final and (before is None or before.status is not s.status):
        end = s.completed_at or at
        if s.status is WorkflowStatus.COMPLETED:
            out.append(WorkflowCompleted(**base, timestamp=end))
        elif s.status is WorkflowStatus.FAILED:
            out.append(WorkflowFailed(**base, timestamp=end, error=s.error or "", failed_step=s.failed_step))
        else:
            out.append(WorkflowCanceled(**base, timestamp=end, reason=(s.error or "").removeprefix("canceled: ")))
    return out
