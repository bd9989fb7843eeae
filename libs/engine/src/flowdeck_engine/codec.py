"""JSON-safe encodings of kernel states and step records, for stores that persist them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from flowdeck_engine.context import StepExecution
from flowdeck_engine.enums import StepStatus, StepType, WorkflowStatus
from flowdeck_engine.kernel import Activity, InstanceState


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def state_to_json(state: InstanceState) -> dict[str, Any]:
    """``state`` as a JSON-safe dictionary (``data`` included as it is)."""
    return {
        "instance_id": str(state.instance_id),
        "workflow_name": state.workflow_name,
        "workflow_version": state.workflow_version,
        "status": state.status.value,
        "data": state.data,
        "started_at": _time(state.started_at),
        "active": {name: [a.kind, a.attempt, _time(a.due_at), _time(a.since)] for name, a in state.active.items()},
        "joins": {name: [count, live] for name, (count, live) in state.joins.items()},
        "queued": list(state.queued),
        "completed_at": _time(state.completed_at),
        "error": state.error,
        "failed_step": state.failed_step,
        "terminal_reached": state.terminal_reached,
        "seq": state.seq,
        "budget_base": state.budget_base,
    }


def state_from_json(raw: dict[str, Any]) -> InstanceState:
    """The state :func:`state_to_json` encoded."""
    started = _parse(raw["started_at"])
    assert started is not None
    return InstanceState(
        UUID(raw["instance_id"]),
        raw["workflow_name"],
        raw["workflow_version"],
        WorkflowStatus(raw["status"]),
        dict(raw["data"]),
        started,
        {
            name: Activity(kind, attempt, _parse(due), _parse(since))
            for name, (kind, attempt, due, since) in raw["active"].items()
        },
        {name: (count, live) for name, (count, live) in raw["joins"].items()},
        tuple(raw["queued"]),
        _parse(raw["completed_at"]),
        raw["error"],
        raw["failed_step"],
        raw["terminal_reached"],
        raw["seq"],
        raw["budget_base"],
    )


def execution_to_json(record: StepExecution) -> dict[str, Any]:
    """A step record as a JSON-safe dictionary (``result`` included as it is)."""
    return {
        "step_name": record.step_name,
        "step_type": record.step_type.value,
        "status": record.status.value,
        "started_at": _time(record.started_at),
        "completed_at": _time(record.completed_at),
        "attempt": record.attempt,
        "result": record.result,
        "error": record.error,
        "completed_by": record.completed_by,
    }


def execution_from_json(raw: dict[str, Any]) -> StepExecution:
    """The record :func:`execution_to_json` encoded."""
    started = _parse(raw["started_at"])
    assert started is not None
    return StepExecution(
        raw["step_name"],
        StepType(raw["step_type"]),
        StepStatus(raw["status"]),
        started,
        _parse(raw["completed_at"]),
        raw["attempt"],
        raw["result"],
        raw["error"],
        raw["completed_by"],
    )
