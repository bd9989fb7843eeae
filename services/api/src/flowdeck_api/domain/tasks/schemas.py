"""Task schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class TaskRead(msgspec.Struct, kw_only=True):
    """A human task with its form."""

    id: UUID
    instance_id: UUID
    workflow: str
    step_name: str
    title: str
    description: str | None
    form_schema: dict[str, Any] | None
    assignee: str | None
    candidate_groups: list[str]
    status: str
    due_at: datetime | None
    reminder_at: datetime | None
    claimed_by: str | None
    created_at: datetime
    completed_at: datetime | None
    completed_by: str | None


class TaskPage(msgspec.Struct, kw_only=True):
    """A page of tasks sorted by due time (tasks without one last); ``next_cursor`` goes on."""

    items: list[TaskRead]
    next_cursor: str | None


class TaskComplete(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The submitted form: validated against the task's form schema."""

    data: dict[str, Any] = msgspec.field(default_factory=dict)


class TaskReassign(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Give the task to a user, or (no assignee) to candidate groups."""

    assignee: str | None = None
    candidate_groups: list[str] | None = None
