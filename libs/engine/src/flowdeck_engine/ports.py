"""The ports through which an engine's shell reaches the world (besides the clock and the bus)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractContextManager
    from datetime import datetime
    from uuid import UUID

    from flowdeck_engine.enums import TaskStatus, WorkflowStatus
    from flowdeck_engine.instance import HumanTask, WorkflowInstance
    from flowdeck_engine.kernel import Event, Transition


class InstanceStore(Protocol):
    """Where instances, their history and their human tasks live.

    ``save`` is the optimistic write: it applies ``transition`` only if the stored instance still
    has ``expected_version``, else raises :class:`~flowdeck_engine.exceptions.ConcurrencyError`
    and changes nothing. On success ``instance`` reflects the new state.
    """

    async def create(self, instance: WorkflowInstance, transition: Transition) -> None:
        """Store a new instance and what its start transition opened."""
        ...

    async def load(self, instance_id: UUID) -> WorkflowInstance:
        """The instance with this id; raises ``InstanceNotFoundError``."""
        ...

    async def save(
        self, instance: WorkflowInstance, transition: Transition, cause: Event, expected_version: int
    ) -> None:
        """Apply ``transition`` (caused by ``cause``) if the stored version is ``expected_version``."""
        ...

    async def list_instances(
        self, *, workflow_name: str | None = None, status: WorkflowStatus | None = None
    ) -> list[WorkflowInstance]:
        """Instances, oldest first, optionally filtered."""
        ...

    async def list_tasks(self, *, instance_id: UUID | None = None, status: TaskStatus | None = None) -> list[HumanTask]:
        """Human tasks, oldest first, optionally filtered."""
        ...


class Dispatcher(Protocol):
    """Runs work for a step of an instance later (timers, retries with backoff, wait timeouts)."""

    def schedule(self, instance_id: UUID, step: str, when: datetime, wake: Callable[[], Awaitable[None]]) -> None:
        """Call ``wake`` at ``when``, replacing what was scheduled for this step."""
        ...

    def cancel(self, instance_id: UUID, step: str) -> None:
        """Call off what is scheduled for this step."""
        ...


class StepQueue(Protocol):
    """Hands machine steps to workers instead of running them in this process.

    ``enqueue`` is called after the change that made the steps due was saved; the worker then
    calls the engine's ``resume(instance_id)``, which runs whatever is due from the stored state
    (so a lost or duplicated message costs nothing but a no-op or a re-send by a reconciler).
    """

    async def enqueue(self, instance: WorkflowInstance, steps: list[str]) -> None:
        """Ask a worker to resume ``instance``, whose ``steps`` are due."""
        ...


class Interceptor(Protocol):
    """Wraps what an engine does, for tracing and metrics; each method returns a context manager.

    ``starting`` wraps a new instance's start and may write into ``metadata`` (stored with the
    instance: a trace context, say); ``continuing`` wraps any later call on an instance (a task
    completed, a callback, a worker resuming it); ``step`` wraps one attempt of a machine step;
    ``saving`` wraps the save of one change.
    """

    def starting(
        self, workflow: str, version: str, tenant_id: str | None, metadata: dict[str, Any]
    ) -> AbstractContextManager[object]:
        """Around the start of an instance of ``workflow`` at ``version`` for ``tenant_id``."""
        ...

    def continuing(self, instance: WorkflowInstance, action: str) -> AbstractContextManager[object]:
        """Around ``action`` (``complete_human_task``, ``resume``, ...) on an existing instance."""
        ...

    def step(self, instance: WorkflowInstance, step_name: str, attempt: int) -> AbstractContextManager[object]:
        """Around one attempt of a machine step."""
        ...

    def saving(self, instance: WorkflowInstance, cause: str) -> AbstractContextManager[object]:
        """Around saving one change (``cause`` names the event that began it)."""
        ...
