"""Workflow instances and human tasks as the engines hand them out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID, SafeUUID

from flowdeck_engine.context import WorkflowContext
from flowdeck_engine.enums import TaskStatus

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from flowdeck_engine.context import StepExecution
    from flowdeck_engine.definition import WorkflowDefinition
    from flowdeck_engine.enums import WorkflowStatus
    from flowdeck_engine.kernel import InstanceState, OpenTask


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


_BATCH = 64
_ids: list[UUID] = []
os.register_at_fork(after_in_child=_ids.clear)  # a forked process must not hand out its parent's ids


_UNKNOWN = SafeUUID.unknown


def _v4(value: int) -> UUID:
    """``UUID(int=value)`` as a version-4 UUID, without the checks ``UUID.__init__`` runs."""
    uid = object.__new__(UUID)
    object.__setattr__(uid, "int", value & _V4_CLEAR | _V4_SET)
    object.__setattr__(uid, "is_safe", _UNKNOWN)
    return uid


def new_id() -> UUID:
    """A random version-4 UUID from ``os.urandom``, as :func:`uuid.uuid4` makes, at a third of its cost:
    the random bytes are read ``_BATCH`` ids at a time (``list.pop`` is atomic, so threads never share one)."""
    try:
        return _ids.pop()
    except IndexError:
        raw = os.urandom(16 * _BATCH)
        _ids.extend([_v4(int.from_bytes(raw[i : i + 16])) for i in range(0, 16 * _BATCH, 16)])
        return _ids.pop()


class WorkflowInstance:
    """A running (or finished) workflow: a live view that the engine keeps up to date.

    ``context`` holds the instance's data; ``step_history`` its finished step executions.
    ``version`` counts the changes saved, for optimistic concurrency.
    """

    __slots__ = ("context", "created_by", "definition", "state", "step_history", "version")

    def __init__(
        self,
        definition: WorkflowDefinition,
        state: InstanceState,
        *,
        tenant_id: str | None = None,
        created_by: str | None = None,
        metadata: dict[str, Any] | None = None,
        version: int = 0,
    ) -> None:
        self.definition = definition
        self.state = state
        self.step_history: list[StepExecution] = []
        self.context = WorkflowContext(
            definition.id,
            state.instance_id,
            state.data,
            "",
            self.step_history,
            state.started_at,
            created_by,
            tenant_id,
            metadata if metadata is not None else {},
            (),
            1,
        )
        self.created_by = created_by
        self.version = version

    def advance(self, state: InstanceState, records: list[StepExecution]) -> None:
        """Take ``state`` as the current state, append ``records`` to the history."""
        self.state = state
        self.context.data = state.data
        self.context.current_step = next(iter(state.active), "")
        if records:
            self.step_history.extend(records)
        self.version += 1

    @property
    def id(self) -> UUID:
        """The instance id."""
        return self.state.instance_id

    @property
    def workflow_name(self) -> str:
        """Name of the workflow definition."""
        return self.state.workflow_name

    @property
    def workflow_version(self) -> str:
        """Version of the workflow definition."""
        return self.state.workflow_version

    @property
    def tenant_id(self) -> str | None:
        """The tenant the instance belongs to."""
        return self.context.tenant_id

    @property
    def status(self) -> WorkflowStatus:
        """The instance's status."""
        return self.state.status

    @property
    def current_steps(self) -> list[str]:
        """Steps under way (running, or waiting for a task, timer or callback)."""
        return list(self.state.active)

    @property
    def current_step(self) -> str | None:
        """The first step under way, or None when nothing is."""
        return next(iter(self.state.active), None)

    @property
    def error(self) -> str | None:
        """Why the instance failed (or was canceled)."""
        return self.state.error

    @property
    def failed_step(self) -> str | None:
        """The step whose failure failed the instance."""
        return self.state.failed_step

    @property
    def started_at(self) -> datetime:
        """When the instance started."""
        return self.state.started_at

    @property
    def completed_at(self) -> datetime | None:
        """When the instance completed, failed or was canceled."""
        return self.state.completed_at

    @property
    def data(self) -> dict[str, Any]:
        """The instance's data (the same as ``context.data``)."""
        return self.state.data

    def to_mermaid(self) -> str:
        """The definition as a Mermaid flowchart with this instance's progress marked."""
        completed = {r.step_name for r in self.step_history if r.status.value == "succeeded"}
        failed = {self.state.failed_step} if self.state.failed_step else set()
        return self.definition.get_graph().to_mermaid_with_state(self.current_steps, completed, failed)

    def __repr__(self) -> str:
        return f"<WorkflowInstance {self.id} {self.workflow_name}@{self.workflow_version} {self.status.value}>"


@dataclass(slots=True)
class HumanTask:
    """A task waiting for a person: complete it with the engine's ``complete_human_task``."""

    instance_id: UUID
    workflow_name: str
    step_name: str
    title: str
    description: str
    form_schema: Mapping[str, Any] | None
    assignee: str | None
    candidate_groups: tuple[str, ...]
    due_at: datetime | None
    reminder_at: datetime | None
    created_at: datetime
    tenant_id: str | None = None
    id: UUID = field(default_factory=new_id)
    status: TaskStatus = TaskStatus.PENDING
    completed_at: datetime | None = None
    completed_by: str | None = None

    @classmethod
    def opened(cls, command: OpenTask, instance: WorkflowInstance, at: datetime) -> HumanTask:
        """The task an ``OpenTask`` command of ``instance`` opens."""
        return cls(
            instance.id,
            instance.workflow_name,
            command.step,
            command.title,
            command.description,
            command.form_schema,
            command.assignee,
            command.candidate_groups,
            command.due_at,
            command.reminder_at,
            at,
            instance.tenant_id,
        )

    def is_for(self, user_id: str | None = None, groups: frozenset[str] | set[str] = frozenset()) -> bool:
        """Whether ``user_id`` (a member of ``groups``) may work on this task."""
        if self.assignee is not None:
            return self.assignee == user_id
        return not self.candidate_groups or not groups.isdisjoint(self.candidate_groups)
