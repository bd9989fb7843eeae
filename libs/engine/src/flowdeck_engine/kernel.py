"""The kernel: every state transition of a workflow instance, as one pure function.

``Kernel(definition).apply(state, event)`` returns a :class:`Transition`: the new state and the
commands the caller must carry out (run a step, open a human task, start a timer, await a
callback, close a wait, record a step execution: the :class:`StepExecution` itself). Events,
commands and states are plain slotted dataclasses treated as immutable (frozen dataclasses cost
three times as much to build, and these are built for every step). The kernel does no I/O and
never reads a clock: every event carries its time. It never mutates the state it is given; a stale
or duplicate event returns the very same state object with no commands, so a shell can tell
"nothing to do".

Branching and joining follow dead-path elimination. Every forward edge out of a finished step
sends its target a signal, live when the edge was taken, dead when it was not; a step with several
forward incoming edges (a join) runs once every one of them has signalled and at least one was
live, and is skipped when all were dead, passing dead signals on. So a join waits exactly for the
branches that were activated and never deadlocks on a branch a condition did not take. Edges that
close a cycle (back edges, found by a depth-first walk from the initial step) re-activate their
target directly. An instance completes when nothing is active and a terminal step was reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from flowdeck_engine.conditions import compile_condition
from flowdeck_engine.context import StepExecution, WorkflowContext, changes
from flowdeck_engine.enums import GatewayMode, StepStatus, StepType, WorkflowStatus
from flowdeck_engine.exceptions import (
    ConditionError,
    InvalidTransitionError,
    TaskNotFoundError,
    TransitionLimitError,
    ValidationError,
)
from flowdeck_engine.policies import NO_RETRY, EngineLimits, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from uuid import UUID

    from flowdeck_engine.definition import WorkflowDefinition
    from flowdeck_engine.steps import Step

RUN: Final = "run"
TASK: Final = "task"
TIMER: Final = "timer"
CALLBACK: Final = "callback"

_new = object.__new__

# Enum members as plain globals for the hot paths: on Python 3.11 every ``WorkflowStatus.RUNNING``
# goes through ``EnumType.__getattr__`` and costs about as much as building a small object.
_RUNNING, _WAITING, _COMPLETED, _FAILED, _CANCELED = (
    WorkflowStatus.RUNNING,
    WorkflowStatus.WAITING,
    WorkflowStatus.COMPLETED,
    WorkflowStatus.FAILED,
    WorkflowStatus.CANCELED,
)
_SUCCEEDED, _STEP_FAILED, _SKIPPED, _STEP_CANCELED = (
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.SKIPPED,
    StepStatus.CANCELED,
)

_KIND = {
    StepType.MACHINE: RUN,
    StepType.GATEWAY: RUN,
    StepType.HUMAN: TASK,
    StepType.TIMER: TIMER,
    StepType.WEBHOOK: CALLBACK,
}


# --- state ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Activity:
    """A step that is under way: running (or due to run), or waiting for a task, timer or callback."""

    kind: str
    attempt: int = 1
    due_at: datetime | None = None
    since: datetime | None = None
    """When a task, timer or callback wait began (its record's ``started_at``)."""


@dataclass(slots=True)
class InstanceState:
    """Everything the kernel knows about one instance. Treat as immutable: the kernel copies it
    (and its containers: ``active`` at once, ``joins`` when it changes)."""

    instance_id: UUID
    workflow_name: str
    workflow_version: str
    status: WorkflowStatus
    data: dict[str, Any]
    started_at: datetime
    active: dict[str, Activity] = field(default_factory=dict)
    joins: dict[str, tuple[int, bool]] = field(default_factory=dict)
    queued: tuple[str, ...] = ()
    completed_at: datetime | None = None
    error: str | None = None
    failed_step: str | None = None
    terminal_reached: bool = False
    seq: int = 0
    budget_base: int = 0

    @property
    def current_steps(self) -> list[str]:
        """Names of the steps under way, in the order they were reached."""
        return list(self.active)

    def copy(self) -> InstanceState:
        """A copy whose containers may be changed without touching this state (built without a
        call of the class: the kernel copies a state for every transition)."""
        s: InstanceState = _new(InstanceState)
        s.instance_id = self.instance_id
        s.workflow_name = self.workflow_name
        s.workflow_version = self.workflow_version
        s.status = self.status
        s.data = self.data
        s.started_at = self.started_at
        s.active = dict(self.active)
        s.joins = self.joins  # copied on write (by _signal)
        s.queued = self.queued
        s.completed_at = self.completed_at
        s.error = self.error
        s.failed_step = self.failed_step
        s.terminal_reached = self.terminal_reached
        s.seq = self.seq
        s.budget_base = self.budget_base
        return s


_RUN_FIRST = Activity(RUN)
_FINAL = frozenset({_COMPLETED, _FAILED, _CANCELED})


def running(state: InstanceState, step: str, attempt: int) -> bool:
    """Whether attempt ``attempt`` of the machine step ``step`` is under way in ``state`` (due, or
    waiting out a retry's backoff): the attempt whose outcome the kernel awaits."""
    act = state.active.get(step)
    return act is not None and act.kind == RUN and act.attempt == attempt and state.status not in _FINAL


def due_runs(state: InstanceState, at: datetime | None = None) -> list[RunStep]:
    """The machine steps of ``state`` to run now: those under way with no backoff, and with ``at``
    also those whose retry backoff has ended by then."""
    return [
        RunStep(name, act.attempt)
        for name, act in state.active.items()
        if act.kind == RUN and (act.due_at is None or (at is not None and act.due_at <= at))
    ]


# --- events (inputs) -----------------------------------------------------------------------------


@dataclass(slots=True)
class StepSucceeded:
    """A running step finished, leaving ``data`` (None: it changed nothing), its own copy of
    ``base``, the data it was given.

    When the instance's data is still ``base``, ``data`` becomes its data (the step's copy is not
    copied again); otherwise (a concurrent branch saved first) only what the step changed from
    ``base`` is applied: all of ``data`` when ``base`` is None.
    """

    step: str
    attempt: int
    at: datetime
    started_at: datetime
    data: dict[str, Any] | None = None
    base: Mapping[str, Any] | None = None
    result: Any = None
    emitted: Sequence[tuple[str, dict[str, Any]]] = ()


@dataclass(slots=True)
class StepFailed:
    """An attempt of a running step raised (or timed out)."""

    step: str
    attempt: int
    at: datetime
    started_at: datetime
    error_type: str
    message: str
    retryable: bool = True


@dataclass(slots=True)
class StepSkipped:
    """A step's ``can_execute`` guard returned False."""

    step: str
    attempt: int
    at: datetime


@dataclass(slots=True)
class TaskCompleted:
    """A person completed the human task of ``step`` with form ``data``."""

    step: str
    user_id: str | None
    data: Mapping[str, Any]
    at: datetime


@dataclass(slots=True)
class TimerFired:
    """The timer of a timer step came due."""

    step: str
    at: datetime


@dataclass(slots=True)
class CallbackReceived:
    """An external system called back a waiting webhook step."""

    step: str
    payload: Any
    at: datetime


@dataclass(slots=True)
class WaitTimedOut:
    """A waiting step's deadline passed: a webhook's timeout, or a human task's escalation."""

    step: str
    at: datetime


@dataclass(slots=True)
class WaitFailed:
    """The external system behind a waiting callback step (an external job's worker) gave up on it."""

    step: str
    error_type: str
    message: str
    at: datetime


@dataclass(slots=True)
class CancelRequested:
    """Someone canceled the instance."""

    reason: str
    at: datetime


@dataclass(slots=True)
class RetryRequested:
    """Someone asked a failed instance to go on, from its failed step or from ``from_step``."""

    from_step: str | None
    at: datetime


Event = (
    StepSucceeded
    | StepFailed
    | StepSkipped
    | TaskCompleted
    | TimerFired
    | CallbackReceived
    | WaitTimedOut
    | WaitFailed
    | CancelRequested
    | RetryRequested
)


# --- commands (outputs) --------------------------------------------------------------------------


@dataclass(slots=True)
class RunStep:
    """Run attempt ``attempt`` of a machine step, now (``not_before`` None) or at that time."""

    step: str
    attempt: int
    not_before: datetime | None = None


@dataclass(slots=True)
class OpenTask:
    """Open the human task of ``step``."""

    step: str
    title: str
    description: str
    form_schema: Mapping[str, Any] | None
    assignee: str | None
    candidate_groups: tuple[str, ...]
    due_at: datetime | None
    reminder_at: datetime | None
    escalate_at: datetime | None = None
    """Deliver :class:`WaitTimedOut` for ``step`` at this time (its escalation)."""


@dataclass(slots=True)
class ReassignTask:
    """The open task of ``step`` now belongs to ``assignee`` / ``candidate_groups``."""

    step: str
    assignee: str | None
    candidate_groups: tuple[str, ...]


@dataclass(slots=True)
class StartTimer:
    """Deliver :class:`TimerFired` for ``step`` at ``fire_at``."""

    step: str
    fire_at: datetime


@dataclass(slots=True)
class AwaitCallback:
    """Accept a callback for ``step``; deliver :class:`WaitTimedOut` at ``timeout_at`` if set."""

    step: str
    timeout_at: datetime | None


@dataclass(slots=True)
class CloseWait:
    """The wait of ``step`` (a task, timer, callback or scheduled run) is over unfulfilled."""

    step: str
    kind: str


@dataclass(slots=True)
class Emit:
    """Publish the custom event ``event_type`` with ``payload``, published by ``step``."""

    step: str
    event_type: str
    payload: dict[str, Any]


Command = RunStep | OpenTask | ReassignTask | StartTimer | AwaitCallback | CloseWait | StepExecution | Emit
"""What a transition asks of its caller; a :class:`StepExecution` means "append it to the history"."""


@dataclass(slots=True)
class Transition:
    """The result of applying an event: the new state and what to carry out."""

    state: InstanceState
    commands: Sequence[Command]
    at: datetime
    then: RunStep | None = None
    """The one machine step this transition made due now, when that is all it readied (it is then
    also the last of ``commands``): a shell may run it straight on and save both as one change."""


# --- the compiled definition ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _EdgePlan:
    target: str
    test: Callable[[InstanceState], bool] | None
    default: bool
    back: bool
    on_timeout: bool = False


@dataclass(slots=True)
class _StepPlan:
    name: str
    step: Step
    kind: str
    step_type: StepType
    retry: RetryPolicy
    terminal: bool
    gateway: GatewayMode | None
    out: tuple[_EdgePlan, ...] = ()
    forward_in: int = 0
    run: RunStep | None = None
    """The command that runs this step's first attempt now (machine steps; commands are immutable)."""
    only: _EdgePlan | None = None
    """The one way out, when this step has a single unconditional edge (not ``on_timeout``)."""
    then: RunStep | None = None
    """``run`` of the machine step that always runs next, when that is all leaving this step does."""


def _condition_test(source: str) -> Callable[[InstanceState], bool]:
    test = compile_condition(source).test
    return lambda state: test(state.data)


def _callable_test(
    definition_id: UUID, condition: Callable[[WorkflowContext], bool]
) -> Callable[[InstanceState], bool]:
    def test(state: InstanceState) -> bool:
        context = WorkflowContext(definition_id, state.instance_id, dict(state.data), started_at=state.started_at)
        return bool(condition(context))

    return test


class Kernel:
    """The transition function of one workflow definition (compiled once, reused for every instance)."""

    def __init__(self, definition: WorkflowDefinition, limits: EngineLimits | None = None) -> None:
        problems = definition.get_graph().validate()
        if problems:
            raise ValidationError(
                f"workflow {definition.name!r} version {definition.version!r} is invalid: "
                + "; ".join(str(p) for p in problems),
                problems,
            )
        self.definition = definition
        self.limits = limits or EngineLimits()
        back = definition.get_graph().back_edges()
        steps: dict[str, _StepPlan] = {}
        for name, step in definition.steps.items():
            gateway = getattr(step, "mode", GatewayMode.EXCLUSIVE) if step.step_type is StepType.GATEWAY else None
            steps[name] = _StepPlan(
                name,
                step,
                CALLBACK if getattr(step, "awaits_callback", False) else _KIND[step.step_type],
                step.step_type,
                getattr(step, "retry_policy", None) or NO_RETRY,
                name in definition.terminal_steps,
                gateway,
            )
        outs: dict[str, list[_EdgePlan]] = {name: [] for name in steps}
        for i, edge in enumerate(definition.edges):
            cond = edge.condition
            test = (
                None
                if cond is None
                else _condition_test(cond)
                if isinstance(cond, str)
                else _callable_test(definition.id, cond)
            )
            outs[edge.source].append(_EdgePlan(edge.target, test, edge.default, i in back, edge.on_timeout))
            if i not in back:
                steps[edge.target].forward_in += 1
        for name, plan in steps.items():
            plan.out = tuple(outs[name])
            if plan.kind == RUN:
                plan.run = RunStep(name, 1)
        for plan in steps.values():
            if len(plan.out) == 1 and plan.out[0].test is None and not plan.out[0].default:
                only = plan.only = None if plan.out[0].on_timeout else plan.out[0]
                target = steps[plan.out[0].target]
                if only and not plan.terminal and target.kind == RUN and (only.back or target.forward_in == 1):
                    plan.then = target.run
        self._steps = steps
        self._max_transitions = self.limits.max_transitions
        self.steps: dict[str, Step] = {name: plan.step for name, plan in steps.items()}
        """The step objects by name."""
        self._handlers: dict[type, Callable[[InstanceState, Any, bool], Transition]] = {
            StepSucceeded: self._on_succeeded,
            StepFailed: self._on_failed,
            StepSkipped: self._on_skipped,
            TaskCompleted: self._on_task_completed,
            TimerFired: self._on_timer_fired,
            CallbackReceived: self._on_callback,
            WaitTimedOut: self._on_timed_out,
            WaitFailed: self._on_wait_failed,
            CancelRequested: self._on_cancel,
            RetryRequested: self._on_retry,
        }

    def step_type(self, name: str) -> StepType:
        """The type of the step named ``name``."""
        return self._steps[name].step_type

    # --- entry points ----------------------------------------------------------------------------

    def start(self, instance_id: UUID, data: Mapping[str, Any], at: datetime) -> Transition:
        """A new instance, its initial step activated."""
        d = self.definition
        state = InstanceState(instance_id, d.name, d.version, _RUNNING, dict(data), at)
        commands: list[Command] = []
        first = self._steps[d.initial_step].run
        if first is not None and (started := self._run_next(state, first, at, commands)) is not None:
            return started
        self._activate(state, d.initial_step, at, commands)
        return self._settle(state, at, commands)

    def apply(self, state: InstanceState, event: Event, *, in_place: bool = False) -> Transition:
        """Apply ``event`` to ``state``.

        With ``in_place`` the new state is ``state`` itself, changed, rather than a copy: for a
        caller that gives ``state`` up (a chain of steps does, for the states between its steps,
        which no one else has seen). A stale event then shows by its empty commands.

        Raises :class:`InvalidTransitionError` (or its subclass :class:`TaskNotFoundError`) when
        the event is a request that does not fit the state, such as completing a task that is not
        open or canceling a finished instance. Stale machine results and late timers are ignored.
        """
        return self._handlers[type(event)](state, event, in_place)

    # --- handlers --------------------------------------------------------------------------------

    def _on_succeeded(self, state: InstanceState, e: StepSucceeded, in_place: bool) -> Transition:
        name = e.step
        act = state.active.get(name)
        if act is None or act.kind != RUN or act.attempt != e.attempt or state.status in _FINAL:
            return Transition(state, (), e.at)
        s = state if in_place else state.copy()
        del s.active[name]
        data = e.data
        if data is not None:
            if e.base is not s.data:
                updates, removed = changes(e.base or {}, data)
                data = {**s.data, **updates}
                for key in removed:
                    data.pop(key, None)
            s.data = data
        plan = self._steps[name]
        commands: list[Command] = [
            StepExecution(name, plan.step_type, _SUCCEEDED, e.started_at, e.at, e.attempt, e.result)
        ]
        if e.emitted:
            commands.extend(Emit(name, kind, payload) for kind, payload in e.emitted)
        return self._go_on(s, plan, e.at, commands)

    def _on_failed(self, state: InstanceState, e: StepFailed, in_place: bool) -> Transition:
        if not running(state, e.step, e.attempt):
            return Transition(state, (), e.at)
        s = state if in_place else state.copy()
        plan = self._steps[e.step]
        error = f"{e.error_type}: {e.message}"
        commands: list[Command] = [
            StepExecution(e.step, plan.step_type, _STEP_FAILED, e.started_at, e.at, e.attempt, error=error)
        ]
        if e.retryable and plan.retry.allows_retry(e.attempt, e.error_type):
            delay = plan.retry.delay_after(e.attempt)
            due = e.at + delay if delay else None
            s.active[e.step] = Activity(RUN, e.attempt + 1, due)
            commands.append(RunStep(e.step, e.attempt + 1, due))
        else:
            del s.active[e.step]
            self._fail(s, e.step, error, e.at, commands)
        return self._settle(s, e.at, commands)

    def _on_skipped(self, state: InstanceState, e: StepSkipped, in_place: bool) -> Transition:
        if not running(state, e.step, e.attempt):
            return Transition(state, (), e.at)
        s = state if in_place else state.copy()
        del s.active[e.step]
        plan = self._steps[e.step]
        commands: list[Command] = [StepExecution(e.step, plan.step_type, _SKIPPED, e.at, e.at, e.attempt)]
        return self._go_on(s, plan, e.at, commands)

    def _waiting(self, state: InstanceState, step: str, kind: str, action: str) -> None:
        if state.status in _FINAL:
            raise InvalidTransitionError(state.instance_id, action, f"it is {state.status.value}")
        act = state.active.get(step)
        if act is None or act.kind != kind:
            raise TaskNotFoundError(state.instance_id, step, action)

    def _on_task_completed(self, state: InstanceState, e: TaskCompleted, in_place: bool) -> Transition:
        self._waiting(state, e.step, TASK, "complete task")
        s = state if in_place else state.copy()
        since = s.active.pop(e.step).since or e.at
        s.data = {**s.data, **e.data}
        plan = self._steps[e.step]
        commands: list[Command] = [
            StepExecution(e.step, plan.step_type, _SUCCEEDED, since, e.at, 1, dict(e.data), None, e.user_id)
        ]
        return self._go_on(s, plan, e.at, commands)

    def _on_timer_fired(self, state: InstanceState, e: TimerFired, in_place: bool) -> Transition:
        act = state.active.get(e.step)
        if act is None or act.kind != TIMER or state.status in _FINAL:
            return Transition(state, (), e.at)
        s = state if in_place else state.copy()
        del s.active[e.step]
        plan = self._steps[e.step]
        commands: list[Command] = [StepExecution(e.step, plan.step_type, _SUCCEEDED, act.since or e.at, e.at, 1)]
        return self._go_on(s, plan, e.at, commands)

    def _on_callback(self, state: InstanceState, e: CallbackReceived, in_place: bool) -> Transition:
        self._waiting(state, e.step, CALLBACK, "deliver callback")
        s = state if in_place else state.copy()
        since = s.active.pop(e.step).since or e.at
        plan = self._steps[e.step]
        key = getattr(plan.step, "result_key", None)
        if key:
            s.data = {**s.data, key: e.payload}
        elif isinstance(e.payload, Mapping):
            s.data = {**s.data, **e.payload}
        else:
            s.data = {**s.data, e.step: e.payload}
        commands: list[Command] = [StepExecution(e.step, plan.step_type, _SUCCEEDED, since, e.at, 1, e.payload)]
        return self._go_on(s, plan, e.at, commands)

    def _on_timed_out(self, state: InstanceState, e: WaitTimedOut, in_place: bool) -> Transition:
        act = state.active.get(e.step)
        if act is None or act.kind not in (TASK, CALLBACK) or act.attempt != 1 or state.status in _FINAL:
            return Transition(state, (), e.at)
        plan = self._steps[e.step]
        escalation = getattr(plan.step, "escalation", None) if act.kind == TASK else None
        if act.kind == TASK and escalation is None:
            return Transition(state, (), e.at)
        s = state if in_place else state.copy()
        commands: list[Command] = []
        if escalation is not None and escalation.reassign_to:
            s.active[e.step] = Activity(TASK, 2, act.due_at, act.since)  # escalated once: a late duplicate is stale
            commands.append(ReassignTask(e.step, None, tuple(escalation.reassign_to)))
            return self._settle(s, e.at, commands)
        del s.active[e.step]
        since = act.since or e.at
        if act.kind == TASK:
            commands.append(CloseWait(e.step, TASK))
        if any(edge.on_timeout for edge in plan.out):
            error = "timed out: took the on_timeout edge"
            commands.append(StepExecution(e.step, plan.step_type, _STEP_CANCELED, since, e.at, 1, error=error))
            self._leave(s, plan, e.at, commands, timed_out=True)
        else:
            error = "StepTimeoutError: no callback arrived before the timeout"
            commands.append(StepExecution(e.step, plan.step_type, _STEP_FAILED, since, e.at, 1, error=error))
            self._fail(s, e.step, error, e.at, commands)
        return self._settle(s, e.at, commands)

    def _on_wait_failed(self, state: InstanceState, e: WaitFailed, in_place: bool) -> Transition:
        self._waiting(state, e.step, CALLBACK, "fail wait")
        s = state if in_place else state.copy()
        since = s.active.pop(e.step).since or e.at
        plan = self._steps[e.step]
        error = f"{e.error_type}: {e.message}"
        commands: list[Command] = [StepExecution(e.step, plan.step_type, _STEP_FAILED, since, e.at, 1, error=error)]
        self._fail(s, e.step, error, e.at, commands)
        return self._settle(s, e.at, commands)

    def _on_cancel(self, state: InstanceState, e: CancelRequested, in_place: bool) -> Transition:
        if state.status in _FINAL:
            raise InvalidTransitionError(state.instance_id, "cancel", f"it is {state.status.value}")
        s = state if in_place else state.copy()
        commands: list[Command] = []
        self._close_all(s, commands)
        s.status = _CANCELED
        s.error = f"canceled: {e.reason}" if e.reason else "canceled"
        s.completed_at = e.at
        return self._settle(s, e.at, commands)

    def _on_retry(self, state: InstanceState, e: RetryRequested, in_place: bool) -> Transition:
        if state.status is not _FAILED:
            raise InvalidTransitionError(
                state.instance_id,
                "retry",
                f"it is {state.status.value}; only failed instances can be retried",
            )
        target = e.from_step or state.failed_step
        if target is None or target not in self._steps:
            reason = f"unknown step {target!r}" if target else "it has no failed step; name a step to retry from"
            raise InvalidTransitionError(state.instance_id, "retry", reason)
        s = state if in_place else state.copy()
        s.status = _RUNNING
        s.error = s.failed_step = s.completed_at = None
        s.active, s.joins, s.queued = {}, {}, ()
        s.budget_base = s.seq
        commands: list[Command] = []
        self._activate(s, target, e.at, commands)
        return self._settle(s, e.at, commands)

    # --- moving on ---------------------------------------------------------------------------------

    def _go_on(self, s: InstanceState, plan: _StepPlan, at: datetime, commands: list[Command]) -> Transition:
        """``plan``'s step is done: leave it and settle."""
        then = plan.then
        if then is not None and (moved := self._run_next(s, then, at, commands)) is not None:
            return moved
        self._leave(s, plan, at, commands)
        return self._settle(s, at, commands)

    def _run_next(self, s: InstanceState, run: RunStep, at: datetime, commands: list[Command]) -> Transition | None:
        """The short way (for the common case) when all that is left to do is run the machine step
        of ``run`` next: what activating it and settling would do. None when something is in the
        way (it is under way or queued already, or the transition budget is spent)."""
        if run.step in s.active or s.queued or s.seq + 1 - s.budget_base > self._max_transitions:
            return None
        s.active[run.step] = _RUN_FIRST
        s.seq += 1
        s.status = _RUNNING
        commands.append(run)
        return Transition(s, commands, at, run)

    def _leave(
        self, s: InstanceState, plan: _StepPlan, at: datetime, commands: list[Command], *, timed_out: bool = False
    ) -> None:
        """``plan``'s step is done: signal its outgoing edges, then run it again if it was queued.

        Edges are taken by their conditions among the normal edges, or among the ``on_timeout``
        edges when the step timed out; every other outgoing edge gets a dead signal.
        """
        if plan.terminal:
            s.terminal_reached = True
        out = plan.out
        if plan.only is not None:
            self._signal(s, plan.only, True, at, commands)
        elif out:
            try:
                lives = self._choose(s, plan, timed_out)
            except ConditionError as exc:
                self._fail(s, plan.name, f"{type(exc).__name__}: {exc.detail}", at, commands)
                return
            except Exception as exc:  # a Python condition callable raised
                self._fail(s, plan.name, f"{type(exc).__name__}: {exc}", at, commands)
                return
            if not any(lives):
                self._fail(s, plan.name, "NoPathError: no outgoing edge condition matched", at, commands)
                return
            for edge, live in zip(out, lives, strict=True):
                if s.status is _FAILED:
                    return
                self._signal(s, edge, live, at, commands)
        if plan.name in s.queued and s.status is not _FAILED:
            queued = list(s.queued)
            queued.remove(plan.name)
            s.queued = tuple(queued)
            self._activate(s, plan.name, at, commands)

    def _choose(self, s: InstanceState, plan: _StepPlan, timed_out: bool) -> list[bool]:
        """Which outgoing edges are taken (same order as ``plan.out``)."""
        out = plan.out
        lives = [False] * len(out)
        picks = [i for i, edge in enumerate(out) if edge.on_timeout is timed_out]
        exclusive = plan.gateway is GatewayMode.EXCLUSIVE
        for i in picks:
            edge = out[i]
            if not edge.default and (edge.test is None or edge.test(s)):
                lives[i] = True
                if exclusive:
                    return lives
        if not any(lives):
            for i in picks:
                lives[i] = out[i].default
        return lives

    def _signal(self, s: InstanceState, edge: _EdgePlan, live: bool, at: datetime, commands: list[Command]) -> None:
        target = edge.target
        if edge.back:
            if live:
                self._activate(s, target, at, commands)
            return
        need = self._steps[target].forward_in
        if need > 1:
            count, any_live = s.joins.get(target, (0, False))
            count += 1
            any_live = any_live or live
            if count < need:
                s.joins = {**s.joins, target: (count, any_live)}
                return
            s.joins = {name: signals for name, signals in s.joins.items() if name != target}
            live = any_live
        if live:
            self._activate(s, target, at, commands)
        else:
            self._skip(s, target, at, commands)

    def _skip(self, s: InstanceState, name: str, at: datetime, commands: list[Command]) -> None:
        """A step no live path reaches: record it skipped and pass dead signals on."""
        plan = self._steps[name]
        commands.append(StepExecution(name, plan.step_type, _SKIPPED, at, at, 0))
        for edge in plan.out:
            if not edge.back:
                self._signal(s, edge, False, at, commands)

    def _activate(self, s: InstanceState, name: str, at: datetime, commands: list[Command]) -> None:
        if name in s.active:
            s.queued = (*s.queued, name)
            return
        plan = self._steps[name]
        kind = plan.kind
        if plan.run is not None:
            s.active[name] = _RUN_FIRST
            commands.append(plan.run)
            return
        step: Any = plan.step
        try:
            if kind == TASK:
                due, reminder = step.due, step.reminder
                commands.append(
                    OpenTask(
                        name,
                        step.title or name,
                        step.description,
                        step.form_schema,
                        step.resolve_assignee(s.data),
                        tuple(step.candidate_groups),
                        at + due if due else None,
                        at + reminder if reminder else None,
                        at + escalation.after if (escalation := getattr(step, "escalation", None)) else None,
                    )
                )
                s.active[name] = Activity(TASK, 1, at + due if due else None, at)
            elif kind == TIMER:
                fire_at = step.fire_at(s.data, at)
                s.active[name] = Activity(TIMER, 1, fire_at, at)
                commands.append(StartTimer(name, fire_at))
            else:
                timeout = getattr(step, "timeout", None)
                timeout_at = at + timeout if timeout else None
                s.active[name] = Activity(CALLBACK, 1, timeout_at, at)
                commands.append(AwaitCallback(name, timeout_at))
        except Exception as exc:  # user code computing an assignee or a time
            self._fail(s, name, f"{type(exc).__name__}: {exc}", at, commands)

    def _close_all(self, s: InstanceState, commands: list[Command]) -> None:
        for name, act in s.active.items():
            if act.kind != RUN or act.due_at is not None:
                commands.append(CloseWait(name, act.kind))
        s.active, s.joins, s.queued = {}, {}, ()

    def _fail(self, s: InstanceState, step: str, error: str, at: datetime, commands: list[Command]) -> None:
        self._close_all(s, commands)
        s.status = _FAILED
        s.error = f"step {step!r} failed: {error}"
        s.failed_step = step
        s.completed_at = at

    def _settle(self, s: InstanceState, at: datetime, commands: list[Command]) -> Transition:
        s.seq += 1
        if s.status not in _FINAL:
            if s.seq - s.budget_base > self._max_transitions:
                self._close_all(s, commands)
                s.status = _FAILED
                s.error = TransitionLimitError(s.instance_id, self.limits.max_transitions).detail
                s.completed_at = at
            elif not s.active:
                if s.terminal_reached:
                    s.status = _COMPLETED
                    s.completed_at = at
                else:
                    s.status = _FAILED
                    s.error = "no terminal step was reached"
                    s.completed_at = at
            else:
                s.status = _WAITING
                for act in s.active.values():
                    if act.kind == RUN:
                        s.status = _RUNNING
                        break
        last = commands[-1] if commands else None
        if type(last) is RunStep and last.not_before is None and sum(type(c) is RunStep for c in commands) == 1:
            return Transition(s, commands, at, last)
        return Transition(s, commands, at)
