"""What one transaction writes for an instance: rows derived from the kernel's transitions.

A :class:`Change` gathers one or more saved transitions of one instance (a whole engine call, or a
single save). Step records, human tasks and outbox events come from the transitions' commands and
causes, in order; pending work, timers and callback tokens from the difference between the state
before the first transition and the state after the last. No transition logic lives here: the
kernel decided everything; this only writes it down.

Rows carry no ``id``: the writer gives each one (PostgreSQL draws them itself). JSON values encoded
here already are :class:`~flowdeck_store.jsonsafe.JsonText`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowdeck_engine.codec import state_to_json
from flowdeck_engine.context import StepExecution
from flowdeck_engine.events import events_for
from flowdeck_engine.kernel import CALLBACK, RUN, TASK, TIMER, CloseWait, OpenTask, TaskCompleted
from flowdeck_store.jsonsafe import event_text, json_text, result_text

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from flowdeck_engine import InstanceState, Transition, WorkflowEvent, WorkflowInstance
    from flowdeck_engine.kernel import Event

_NAMESPACE = uuid.UUID("0b6c8f5e-8d7f-4a51-9b0e-5c7f3f8e2a10")


def definition_row_id(tenant_id: UUID, name: str, version: str) -> UUID:
    """The id of a tenant's row for a definition the engine registered in code (stable everywhere)."""
    return uuid.uuid5(_NAMESPACE, f"{tenant_id}/{name}@{version}")


def kernel_state_json(state: InstanceState) -> dict[str, Any]:
    """The kernel state as stored: everything but ``data`` (that is the ``context_data`` column)."""
    raw = state_to_json(state)
    del raw["data"]
    return raw


@dataclass(slots=True)
class Change:
    """The rows of one instance's saved transitions, waiting to be written in one transaction."""

    instance: WorkflowInstance
    tenant_id: UUID
    definition_id: UUID
    created: bool
    expected_version: int
    """The stored version the write is fenced on (ignored when ``created``)."""
    start: InstanceState | None
    """The state before the first transition (None for a new instance)."""
    steps: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    task_closes: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    events: list[WorkflowEvent] = field(default_factory=list)
    saves: int = 0

    def add(self, before: InstanceState | None, transition: Transition, cause: Event | None) -> None:
        """Record the rows of ``transition`` (applied to ``before``, caused by ``cause``)."""
        instance, tenant, at = self.instance, self.tenant_id, transition.at
        iid = instance.id
        seq = len(instance.step_history)
        if type(cause) is TaskCompleted:
            self._close(cause.step, "completed", cause.user_id, cause.at)
        for command in transition.commands:
            kind = type(command)
            if kind is StepExecution:
                ex: StepExecution = command  # type: ignore[assignment]
                self.steps.append(
                    {
                        "tenant_id": tenant,
                        "instance_id": iid,
                        "seq": seq,
                        "step_name": ex.step_name,
                        "step_type": ex.step_type.value,
                        "status": ex.status.value,
                        "input_data": None,
                        "output_data": None if ex.result is None else result_text(ex.result),
                        "error": ex.error,
                        "started_at": ex.started_at,
                        "completed_at": ex.completed_at,
                        "assigned_to": None,
                        "completed_by": ex.completed_by,
                        "attempt": ex.attempt,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                seq += 1
            elif kind is OpenTask:
                task: OpenTask = command  # type: ignore[assignment]
                self.tasks.append(
                    {
                        "tenant_id": tenant,
                        "instance_id": iid,
                        "workflow_name": instance.workflow_name,
                        "step_name": task.step,
                        "title": task.title,
                        "description": task.description or None,
                        "form_schema": None if task.form_schema is None else json_text(task.form_schema),
                        "assignee_id": task.assignee,
                        "assignee_group": task.candidate_groups[0] if task.candidate_groups else None,
                        "candidate_groups": list(task.candidate_groups),
                        "due_at": task.due_at,
                        "reminder_at": task.reminder_at,
                        "status": "pending",
                        "completed_at": None,
                        "completed_by": None,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
            elif kind is CloseWait and command.kind == TASK:  # type: ignore[union-attr]
                self._close(command.step, "canceled", None, at)  # type: ignore[union-attr]
        for event in events_for(before, transition, cause, tenant_id=instance.tenant_id):
            self.events.append(event)
            self.outbox.append(
                {
                    "tenant_id": tenant,
                    "instance_id": iid,
                    "event_type": event.type,
                    "payload": event_text(event),
                    "occurred_at": event.timestamp,
                    "created_at": at,
                    "updated_at": at,
                }
            )
        self.saves += 1

    def _close(self, step: str, status: str, user: str | None, at: datetime) -> None:
        for row in reversed(self.tasks):  # opened by this very change: never reaches the table open
            if row["step_name"] == step and row["status"] == "pending":
                row.update(status=status, completed_by=user, completed_at=at, updated_at=at)
                return
        self.task_closes.append(
            {"instance_id": self.instance.id, "step_name": step, "status": status, "completed_by": user, "at": at}
        )

    # --- the instance row and the waits ------------------------------------------------------------

    def instance_row(self, now: datetime) -> dict[str, Any]:
        """The instance's row as it stands after the last transition."""
        instance = self.instance
        state = instance.state
        return {
            "id": instance.id,
            "tenant_id": self.tenant_id,
            "definition_id": self.definition_id,
            "workflow_name": state.workflow_name,
            "workflow_version": state.workflow_version,
            "status": state.status.value,
            "current_step": next(iter(state.active), None),
            "current_steps": list(state.active),
            "context_data": state.data,
            "metadata": instance.context.metadata,
            "error": state.error,
            "started_at": state.started_at,
            "completed_at": state.completed_at,
            "created_by": instance.created_by,
            "version": instance.version,
            "kernel_state": kernel_state_json(state),
            "created_at": now,
            "updated_at": now,
        }

    def waits(self, now: datetime) -> Waits:
        """Pending work, timers and callback tokens to add and to remove."""
        before = self.start.active if self.start is not None else {}
        after = self.instance.state.active
        iid, tenant = self.instance.id, self.tenant_id
        w = Waits()
        for name, act in before.items():
            new = after.get(name)
            if new is not None and new.kind == act.kind and new.attempt == act.attempt and new.due_at == act.due_at:
                continue
            if act.kind == RUN:
                w.work_gone.append({"instance_id": iid, "step_name": name, "attempt": act.attempt})
            elif act.kind == TIMER:
                w.timers_gone.append({"instance_id": iid, "step_name": name, "kind": "timer"})
            elif act.kind == CALLBACK:
                w.tokens_gone.append({"instance_id": iid, "step_name": name})
                if act.due_at is not None:
                    w.timers_gone.append({"instance_id": iid, "step_name": name, "kind": "timeout"})
        for name, act in after.items():
            old = before.get(name)
            if old is not None and old.kind == act.kind and old.attempt == act.attempt and old.due_at == act.due_at:
                continue
            base = {"tenant_id": tenant, "instance_id": iid, "step_name": name}
            stamps = {"created_at": now, "updated_at": now}
            if act.kind == RUN:
                w.work_new.append(
                    {
                        **base,
                        "attempt": act.attempt,
                        "not_before": act.due_at,
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "fence": 0,
                        **stamps,
                    }
                )
            elif act.kind == TIMER and act.due_at is not None:
                w.timers_new.append({**base, "kind": "timer", "fire_at": act.due_at, **stamps})
            elif act.kind == CALLBACK:
                w.tokens_new.append({**base, "token": secrets.token_urlsafe(32), "expires_at": act.due_at, **stamps})
                if act.due_at is not None:
                    w.timers_new.append({**base, "kind": "timeout", "fire_at": act.due_at, **stamps})
        return w


@dataclass(slots=True)
class Waits:
    """Rows of the waiting tables to insert (``*_new``) and keys of rows to delete (``*_gone``)."""

    work_new: list[dict[str, Any]] = field(default_factory=list)
    work_gone: list[dict[str, Any]] = field(default_factory=list)
    timers_new: list[dict[str, Any]] = field(default_factory=list)
    timers_gone: list[dict[str, Any]] = field(default_factory=list)
    tokens_new: list[dict[str, Any]] = field(default_factory=list)
    tokens_gone: list[dict[str, Any]] = field(default_factory=list)
