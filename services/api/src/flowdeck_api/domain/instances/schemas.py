"""Instance schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class InstanceStart(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Start an instance of ``workflow`` (its latest active version unless ``version``) with ``input``."""

    workflow: str = msgspec.field(name="workflow")
    version: str | None = None
    input: dict[str, Any] = msgspec.field(default_factory=dict)


class InstanceCancel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Why the instance is canceled."""

    reason: str = ""


class InstanceRetry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where to resume a failed instance: its failed step unless ``from_step``."""

    from_step: str | None = None


class StepRead(msgspec.Struct, kw_only=True):
    """One step execution of the instance's history."""

    step_name: str
    step_type: str
    status: str
    attempt: int
    started_at: datetime
    completed_at: datetime | None
    error: str | None
    completed_by: str | None


class InstanceSummary(msgspec.Struct, kw_only=True):
    """An instance in a list."""

    id: UUID
    workflow: str
    version: str
    status: str
    current_steps: list[str]
    error: str | None
    started_at: datetime
    completed_at: datetime | None
    created_by: str | None


class CallbackRead(msgspec.Struct, kw_only=True):
    """A webhook step waiting for a callback: POST the payload to ``url`` (no bearer token needed)."""

    step_name: str
    url: str
    expires_at: datetime | None


class InstanceRead(InstanceSummary, kw_only=True):
    """One instance: its state, context, step history, and the callbacks it waits for."""

    context: dict[str, Any]
    steps: list[StepRead]
    callbacks: list[CallbackRead] = msgspec.field(default_factory=list)


class InstancePage(msgspec.Struct, kw_only=True):
    """A page of instances, newest first; ``next_cursor`` fetches the next page."""

    items: list[InstanceSummary]
    next_cursor: str | None


class MermaidRead(msgspec.Struct, kw_only=True):
    """A Mermaid diagram."""

    mermaid: str
