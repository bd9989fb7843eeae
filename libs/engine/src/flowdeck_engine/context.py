"""The execution context handed to steps, and the record of one step execution."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowdeck_engine.enums import StepStatus, StepType

_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), bytes, complex, Decimal, datetime, date, time, timedelta, UUID}
)
"""Types (exactly these, not subclasses) whose values nothing can change in place."""
_MISSING: Any = object()
_new = object.__new__


def private_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` that may be changed at any depth without touching ``data``.

    When every value is immutable (the common case) a copy of the top level is all it takes.
    Otherwise the whole is copied deeply through pickle, which keeps types and shared references
    as ``copy.deepcopy`` does at a sixth of its cost on JSON-like data; what pickle cannot take (a
    local class, a lock) is deep-copied value by value, and a value that cannot be copied at all (a
    client: not data) stays shared.
    """
    for value in data.values():
        if type(value) not in _IMMUTABLE:
            break
    else:
        return dict(data)
    try:
        copied: dict[str, Any] = pickle.loads(pickle.dumps(dict(data), pickle.HIGHEST_PROTOCOL))  # noqa: S301  # our own bytes
    except Exception:
        return {key: _copied(value) for key, value in data.items()}
    return copied


def _copied(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What changed from ``before`` to ``after`` (a :func:`private_copy` of it, then changed by a
    step): the keys set, with their values, and the keys removed.

    A key counts as set when its value differs from the original, type for type (a copy that
    still equals the original does not count): so a step that left a value alone does not
    overwrite what a concurrent branch saved meanwhile.
    """
    updates = {
        key: value
        for key, value in after.items()
        if (old := before.get(key, _MISSING)) is not value and (old is _MISSING or not _same(old, value))
    }
    removed = tuple(k for k in before if k not in after) if len(after) < len(before) + len(updates) else ()
    return updates, removed


def _same(a: Any, b: Any) -> bool:
    """Whether ``b`` is an unchanged copy of ``a`` (types must match at every level: 1 is not True)."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(map(_same, a, b))
    try:
        return bool(a == b)
    except Exception:  # an == that does not answer yes or no (an array's): count it as changed
        return False


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
    The engine hands each step execution its own copy of ``data`` (deep where values are mutable,
    see :func:`private_copy`) and keeps the changes only when the step succeeds, so a failed step
    leaves the context as it was, nested values included.
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
    emitted: tuple[tuple[str, dict[str, Any]], ...] = ()
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
        self.emitted = (*self.emitted, (event_type, dict(payload or {})))

    def with_step(self, step_name: str, data: dict[str, Any] | None = None, attempt: int = 1) -> WorkflowContext:
        """A context for running attempt ``attempt`` of ``step_name``: the same facts, a
        :func:`private_copy` of ``data`` (of this context's data when None).

        Built without a call of the class (the engine builds one for every step it runs).
        """
        context: WorkflowContext = _new(WorkflowContext)
        context.workflow_id = self.workflow_id
        context.instance_id = self.instance_id
        context.data = private_copy(self.data if data is None else data)
        context.current_step = step_name
        context.step_history = self.step_history
        context.started_at = self.started_at
        context.user_id = self.user_id
        context.tenant_id = self.tenant_id
        context.metadata = self.metadata
        context.emitted = ()
        context.attempt = attempt
        return context

    def moved_to(self, step_name: str, data: dict[str, Any], attempt: int = 1) -> WorkflowContext:
        """This very context, moved on to attempt ``attempt`` of ``step_name`` with a
        :func:`private_copy` of ``data``: how a chain of machine steps hands its one context on."""
        self.data = private_copy(data)
        self.current_step = step_name
        self.attempt = attempt
        self.emitted = ()
        return self
