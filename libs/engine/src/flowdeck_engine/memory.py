"""In-memory adapters of the ports: what :class:`LocalExecutionEngine` runs on by default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowdeck_engine.context import StepExecution
from flowdeck_engine.enums import TaskStatus
from flowdeck_engine.exceptions import ConcurrencyError, InstanceNotFoundError
from flowdeck_engine.instance import HumanTask
from flowdeck_engine.kernel import CloseWait, OpenTask, ReassignTask, RunStep, TaskCompleted

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime
    from uuid import UUID

    from flowdeck_engine.clock import Clock, Scheduled
    from flowdeck_engine.enums import WorkflowStatus
    from flowdeck_engine.instance import WorkflowInstance
    from flowdeck_engine.kernel import Event, Transition


_CANCELED, _COMPLETED = TaskStatus.CANCELED, TaskStatus.COMPLETED  # globals: see kernel's _RUNNING


class InMemoryInstanceStore:
    """Instances and tasks in dictionaries. The instance objects it hands out are the stored ones."""

    def __init__(self) -> None:
        # keyed by the id's integer: hashing a UUID is a Python call (UUID.__hash__)
        self._instances: dict[int, WorkflowInstance] = {}
        self._tasks: list[HumanTask] = []
        self._open: dict[tuple[int, str], HumanTask] = {}

    async def create(self, instance: WorkflowInstance, transition: Transition) -> None:
        """Store ``instance`` and open the tasks its start opened."""
        self._instances[instance.state.instance_id.int] = instance
        self._apply(instance, transition, None)

    async def load(self, instance_id: UUID) -> WorkflowInstance:
        """The stored instance object."""
        try:
            return self._instances[instance_id.int]
        except (KeyError, AttributeError):  # AttributeError: not a UUID
            raise InstanceNotFoundError(instance_id) from None

    async def save(
        self, instance: WorkflowInstance, transition: Transition, cause: Event, expected_version: int
    ) -> None:
        """Apply ``transition`` to the stored instance if its version is still ``expected_version``.

        The instance objects this store hands out are the stored ones, so ``instance`` is it.
        """
        if instance.version != expected_version:
            raise ConcurrencyError(instance.id, expected_version)
        self._apply(instance, transition, cause)

    def _apply(self, instance: WorkflowInstance, transition: Transition, cause: Event | None) -> None:
        records: list[StepExecution] = []
        key = transition.state.instance_id.int
        for command in transition.commands:
            if isinstance(command, StepExecution):
                records.append(command)
            elif isinstance(command, RunStep):
                continue  # the engine's to run
            elif isinstance(command, OpenTask):
                opened = HumanTask.opened(command, instance, transition.at)
                self._tasks.append(opened)
                self._open[key, opened.step_name] = opened
            elif isinstance(command, ReassignTask) and (task := self._open.get((key, command.step))):
                task.assignee = command.assignee
                task.candidate_groups = command.candidate_groups
            elif isinstance(command, CloseWait) and (task := self._open.pop((key, command.step), None)):
                task.status = _CANCELED
        if isinstance(cause, TaskCompleted) and (done := self._open.pop((key, cause.step), None)) is not None:
            done.status = _COMPLETED
            done.completed_at = cause.at
            done.completed_by = cause.user_id
        instance.advance(transition.state, records)

    async def list_instances(
        self, *, workflow_name: str | None = None, status: WorkflowStatus | None = None
    ) -> list[WorkflowInstance]:
        """Stored instances, oldest first."""
        return [
            i
            for i in self._instances.values()
            if (workflow_name is None or i.workflow_name == workflow_name) and (status is None or i.status is status)
        ]

    async def list_tasks(self, *, instance_id: UUID | None = None, status: TaskStatus | None = None) -> list[HumanTask]:
        """Stored tasks, oldest first."""
        return [
            t
            for t in self._tasks
            if (instance_id is None or t.instance_id == instance_id) and (status is None or t.status is status)
        ]


class ClockDispatcher:
    """Schedules wake-ups on a clock; one per instance and step."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._scheduled: dict[tuple[UUID, str], Scheduled] = {}

    def schedule(self, instance_id: UUID, step: str, when: datetime, wake: Callable[[], Awaitable[None]]) -> None:
        """Call ``wake`` at ``when``."""
        key = (instance_id, step)
        self.cancel(instance_id, step)

        async def run() -> None:
            self._scheduled.pop(key, None)
            await wake()

        self._scheduled[key] = self._clock.call_at(when, run)

    def cancel(self, instance_id: UUID, step: str) -> None:
        """Call off the wake-up of this step, if any."""
        if not self._scheduled:
            return
        scheduled = self._scheduled.pop((instance_id, step), None)
        if scheduled is not None:
            scheduled.cancel()
