"""The execution context handed to steps, and the record of one step execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from flowdeck_engine.enums import StepStatus, StepType


@dataclass(slots=True)
class StepExecution:
    """One execution (attempt) of a step, as kept in an instance's history."""

    step_name: str
    step_type: StepType
    status: StepStatus
    started_at: datetime
    completed_at: datetime | None = None
    attempt: int = 1
    result: Any = None
    error: str | None = None
    completed_by: str | None = None


@dataclass(slots=True)
class WorkflowContext:
    """Execution context passed between steps: the instance's data plus who and where.

    ``data`` is the instance's mutable data dictionary; ``get`` and ``set`` read and write it.
    The engine hands each step execution its own copy of the top level of ``data`` and keeps the
    changes only when the step succeeds, so a failed step leaves the context as it was. Replace
    nested values with ``set`` rather than mutating them in place.
    """

    workflow_id: UUID
    instance_id: UUID
    data: dict[str, Any] = field(default_factory=dict)
    current_step: str = ""
    step_history: list[StepExecution] = field(default_factory=list)
    started_at: datetime | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Events the running step published with :meth:`emit` (kept only if the step succeeds)."""
    attempt: int = 1
    """Which attempt of ``current_step`` this is (retries count up)."""

    @property
    def idempotency_key(self) -> str:
        """``instance:step:attempt``: the same every time this attempt runs (a step runs at least
        once: after a crash before its commit, the attempt runs again). Pass it to external
        systems (the ``http`` action sends it as ``Idempotency-Key``) so a re-run has no second effect."""
        return f"{self.instance_id}:{self.current_step}:{self.attempt}"

    def get(self, key: str, default: Any = None) -> Any:
        """Return ``data[key]``, or ``default`` when the key is missing."""
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""
        self.data[key] = value

    def emit(self, event_type: str, payload: dict[str, Any] | None = None) -> None:
        """Publish a custom event (``event_type``, ``payload``) when the running step succeeds.

        It reaches the engine's event bus as a :class:`~flowdeck_engine.events.CustomEvent`.
        """
        self.emitted.append((event_type, dict(payload or {})))

    def with_step(self, step_name: str, data: dict[str, Any] | None = None) -> WorkflowContext:
        """A context for running ``step_name``: the same facts, a copy of the top level of ``data``
        (of this context's data when None)."""
        return WorkflowContext(
            self.workflow_id,
            self.instance_id,
            dict(self.data if data is None else data),
            step_name,
            self.step_history,
            self.started_at,
            self.user_id,
            self.tenant_id,
            self.metadata,
        )
