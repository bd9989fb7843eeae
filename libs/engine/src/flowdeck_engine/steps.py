"""Steps: the protocol every step satisfies, and the base classes to build them from."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from flowdeck_engine.enums import GatewayMode, StepType

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from flowdeck_engine.context import WorkflowContext
    from flowdeck_engine.policies import Escalation, RetryPolicy


@runtime_checkable
class Step(Protocol):
    """What the engine needs of a step. Any object with these members works as a step."""

    name: str
    description: str

    @property
    def step_type(self) -> StepType:
        """What kind of step this is (a class attribute on the base classes)."""
        ...

    async def execute(self, context: WorkflowContext) -> Any:
        """Do the step's work, reading and writing ``context``."""
        ...

    async def can_execute(self, context: WorkflowContext) -> bool:
        """Guard: when it returns False the step is skipped (recorded SKIPPED) and the
        workflow goes on along its outgoing edges as if it had succeeded."""
        ...

    async def on_success(self, context: WorkflowContext, result: Any) -> None:
        """Hook called after a successful execution."""
        ...

    async def on_failure(self, context: WorkflowContext, error: Exception) -> None:
        """Hook called after each failed attempt (before any retry)."""
        ...


class BaseStep:
    """Common base of the concrete step classes.

    Subclasses set ``name`` and ``description`` as class attributes (as in the litestar-workflows
    documents) or pass them to the constructor. ``retry_policy`` and ``timeout`` apply to each
    execution: a step that raises or exceeds ``timeout`` is tried again as its policy allows,
    then fails the instance.
    """

    name: str = ""
    description: str = ""
    step_type: ClassVar[StepType] = StepType.MACHINE
    retry_policy: RetryPolicy | None = None
    timeout: timedelta | None = None

    def __init__(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        if description is not None:
            self.description = description
        if retry_policy is not None:
            self.retry_policy = retry_policy
        if timeout is not None:
            self.timeout = timeout

    async def execute(self, context: WorkflowContext) -> Any:
        """Do nothing; subclasses override."""
        return None

    async def can_execute(self, context: WorkflowContext) -> bool:
        """Always allow execution; subclasses override to guard."""
        return True

    async def on_success(self, context: WorkflowContext, result: Any) -> None:
        """Do nothing; subclasses override."""

    async def on_failure(self, context: WorkflowContext, error: Exception) -> None:
        """Do nothing; subclasses override."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class BaseMachineStep(BaseStep):
    """Base class for automated (machine) steps: implement ``execute``."""

    step_type = StepType.MACHINE


class BaseHumanStep(BaseStep):
    """A step that waits for a person to complete a form.

    When reached, the instance waits (``WAITING``) and a task is opened for ``assignee`` (a user
    id) or, when unassigned, for any member of ``candidate_groups``. Completing the task merges
    the submitted form data into the context and the workflow goes on. ``execute`` is not called
    for human steps; ``on_success`` receives the submitted form data.
    """

    step_type = StepType.HUMAN
    title: str = ""
    form_schema: Mapping[str, Any] | None = None
    assignee: str | None = None
    candidate_groups: Sequence[str] = ()
    due: timedelta | None = None
    reminder: timedelta | None = None
    escalation: Escalation | None = None

    def __init__(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        title: str | None = None,
        form_schema: Mapping[str, Any] | None = None,
        assignee: str | None = None,
        candidate_groups: Sequence[str] | None = None,
        due: timedelta | None = None,
        reminder: timedelta | None = None,
        escalation: Escalation | None = None,
    ) -> None:
        super().__init__(name, description)
        if title is not None:
            self.title = title
        if form_schema is not None:
            self.form_schema = form_schema
        if assignee is not None:
            self.assignee = assignee
        if candidate_groups is not None:
            self.candidate_groups = tuple(candidate_groups)
        if due is not None:
            self.due = due
        if reminder is not None:
            self.reminder = reminder
        if escalation is not None:
            self.escalation = escalation

    def resolve_assignee(self, data: Mapping[str, Any]) -> str | None:
        """The user the task is assigned to, given the instance's data. Override to compute it."""
        return self.assignee


class GatewayStep(BaseStep):
    """A decision point: its outgoing edges' conditions choose the way on.

    ``EXCLUSIVE`` takes the first edge (in edge order) whose condition holds; ``INCLUSIVE`` takes
    every such edge. Either falls back to the edge marked ``default=True``; with neither, the
    instance fails with :class:`~flowdeck_engine.exceptions.NoPathError`.
    """

    step_type = StepType.GATEWAY
    mode: GatewayMode = GatewayMode.EXCLUSIVE

    def __init__(
        self, name: str | None = None, description: str | None = None, *, mode: GatewayMode | None = None
    ) -> None:
        super().__init__(name, description)
        if mode is not None:
            self.mode = mode


class TimerStep(BaseStep):
    """Waits for a duration from the moment it is reached, or until a point in time."""

    step_type = StepType.TIMER
    duration: timedelta | None = None
    until: datetime | None = None

    def __init__(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        duration: timedelta | None = None,
        until: datetime | None = None,
    ) -> None:
        super().__init__(name, description)
        if duration is not None:
            self.duration = duration
        if until is not None:
            self.until = until

    def fire_at(self, data: Mapping[str, Any], now: datetime) -> datetime:
        """When the timer fires, given the instance's data and the time it was reached."""
        if self.until is not None:
            return self.until
        return now + (self.duration or timedelta(0))


class WebhookStep(BaseStep):
    """Waits for an external system to call back with a payload.

    The payload is merged into the context, at ``result_key`` when set, else at the top level.
    ``timeout`` bounds the wait: when it passes, the workflow goes on along the step's
    ``on_timeout`` edges, or, when it has none, the step fails with ``StepTimeoutError``.

    Any step whose ``awaits_callback`` is True waits like this (an external job is one).
    """

    awaits_callback: ClassVar[bool] = True

    step_type = StepType.WEBHOOK
    result_key: str | None = None

    def __init__(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        timeout: timedelta | None = None,
        result_key: str | None = None,
    ) -> None:
        super().__init__(name, description, timeout=timeout)
        if result_key is not None:
            self.result_key = result_key
