"""Task deadlines in SQL: the timers of a human task's reminder and escalation, and its reassignment.

The kernel opens a task with a reminder time (``reminder`` after it opened) and an escalation time
(``Escalation.after``); when the escalation fires it either reassigns the task (its activity's
attempt goes from 1 to 2) or closes it along the step's timeout edges. This module works out what
the generic change writer does not: ``workflow_timers`` rows of kind ``reminder`` and
``escalation`` while such a task is open (the scheduler sends the reminder as a
``HumanTaskReminder`` event, and fires the escalation through ``expire_wait``), which the writer
adds to its one statement, and the new candidate groups of a reassigned task. All are read off the
states before and after a change and written in the change's own transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import Table, insert, select, update

from flowdeck_engine.kernel import TASK
from flowdeck_store.inbox import route_tasks
from flowdeck_store.models import HumanTaskModel, OutboxEventModel, TimerModel

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

    from flowdeck_engine import InstanceState
    from flowdeck_engine.kernel import Activity
    from flowdeck_store.changes import Change

ESCALATION: Final = "escalation"
REMINDER: Final = "reminder"
_KINDS: Final = (ESCALATION, REMINDER)
_TIMERS = cast("Table", TimerModel.__table__)
_TASKS = cast("Table", HumanTaskModel.__table__)
_OUTBOX = cast("Table", OutboxEventModel.__table__)


@dataclass(slots=True)
class EscalationRows:
    """Escalation timers to add and remove, and tasks to reassign, for a batch of changes."""

    new: list[dict[str, Any]] = field(default_factory=list)
    gone: list[tuple[UUID, str]] = field(default_factory=list)
    reassign: list[tuple[UUID, str, tuple[str, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new or self.gone or self.reassign)

    def timers_gone(self) -> list[dict[str, Any]]:
        """The keys of the timer rows to delete (the change writer's ``workflow_timers`` keys)."""
        return [{"instance_id": iid, "step_name": step, "kind": kind} for iid, step in self.gone for kind in _KINDS]


def _open(act: Activity | None) -> bool:
    return act is not None and act.kind == TASK and act.attempt == 1


def escalation_rows(changes: Sequence[Change], now: datetime) -> EscalationRows:
    """What ``changes`` (written successfully) mean for escalation timers and task assignment."""
    rows = EscalationRows()
    for change in changes:
        before: dict[str, Activity] = change.start.active if change.start is not None else {}
        state: InstanceState = change.instance.state
        steps = change.instance.definition.steps
        iid = change.instance.id
        for name, act in before.items():
            new = state.active.get(name)
            if _open(act) and not (_open(new) and new is not None and new.since == act.since):
                rows.gone.append((iid, name))
                if new is not None and new.kind == TASK and new.attempt == 2:
                    escalation = getattr(steps.get(name), "escalation", None)
                    if escalation is not None and escalation.reassign_to:
                        rows.reassign.append((iid, name, tuple(escalation.reassign_to)))
        for name, act in state.active.items():
            old = before.get(name)
            if not _open(act) or (_open(old) and old is not None and old.since == act.since):
                continue
            if act.since is None:
                continue
            step = steps.get(name)
            escalation = getattr(step, "escalation", None)
            reminder = getattr(step, "reminder", None)
            for kind, after in ((ESCALATION, escalation and escalation.after), (REMINDER, reminder)):
                if after:
                    rows.new.append(
                        {
                            "id": uuid.uuid4(),
                            "tenant_id": change.tenant_id,
                            "instance_id": iid,
                            "step_name": name,
                            "kind": kind,
                            "fire_at": act.since + after,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
    return rows


async def write_reassignments(
    session: AsyncSession, tenant_id: UUID, reassign: Sequence[tuple[UUID, str, tuple[str, ...]]], now: datetime
) -> None:
    """Give the escalated tasks of ``reassign`` (:attr:`EscalationRows.reassign` of written changes)
    to their new candidate groups, in ``session``'s transaction."""
    t = _TASKS.c
    for iid, step, groups in reassign:
        moved = await session.execute(
            update(_TASKS)
            .where(t.tenant_id == tenant_id, t.instance_id == iid, t.step_name == step, t.status == "pending")
            .values(
                assignee_id=None,
                candidate_groups=list(groups),
                assignee_group=groups[0],
                claimed_by=None,
                claimed_at=None,
                updated_at=now,
            )
            .returning(t.id, t.assignee_id, t.candidate_groups, t.status, t.due_at)
        )
        await route_tasks(session, tenant_id, [row._asdict() for row in moved])


async def send_reminder(session: AsyncSession, tenant_id: UUID, instance_id: UUID, step: str, now: datetime) -> bool:
    """Write the ``HumanTaskReminder`` event of the open task of ``step`` to the outbox (in the
    caller's transaction, with the removal of its timer: so it is sent once); False when the task
    is no longer open."""
    t = _TASKS.c
    task = (
        await session.execute(
            select(t.id, t.title, t.assignee_id, t.candidate_groups, t.due_at, t.workflow_name).where(
                t.tenant_id == tenant_id, t.instance_id == instance_id, t.step_name == step, t.status == "pending"
            )
        )
    ).one_or_none()
    if task is None:
        return False
    payload = {
        "type": "HumanTaskReminder",
        "tenant_id": str(tenant_id),
        "instance_id": str(instance_id),
        "workflow_name": task.workflow_name,
        "step_name": step,
        "task_id": str(task.id),
        "title": task.title,
        "assignee": task.assignee_id,
        "candidate_groups": list(task.candidate_groups or []),
        "due_at": None if task.due_at is None else task.due_at.isoformat(),
        "timestamp": now.isoformat(),
    }
    await session.execute(
        insert(_OUTBOX),
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant_id,
                "instance_id": instance_id,
                "event_type": "HumanTaskReminder",
                "payload": payload,
                "occurred_at": now,
                "published_at": None,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    return True


__all__ = ["ESCALATION", "REMINDER", "EscalationRows", "escalation_rows", "send_reminder", "write_reassignments"]
