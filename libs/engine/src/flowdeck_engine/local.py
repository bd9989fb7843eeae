"""The local engine: the kernel plus in-memory adapters, running machine steps in this process."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from flowdeck_engine.clock import SystemClock
from flowdeck_engine.context import StepExecution
from flowdeck_engine.enums import StepType, TaskStatus
from flowdeck_engine.events import events_for
from flowdeck_engine.exceptions import (
    ConcurrencyError,
    InvalidTransitionError,
    StepTimeoutError,
    WorkflowNotFoundError,
)
from flowdeck_engine.instance import WorkflowInstance, new_id
from flowdeck_engine.kernel import (
    AwaitCallback,
    CallbackReceived,
    CancelRequested,
    CloseWait,
    OpenTask,
    RetryRequested,
    RunStep,
    StartTimer,
    StepFailed,
    StepSkipped,
    StepSucceeded,
    TaskCompleted,
    TimerFired,
    Transition,
    WaitFailed,
    WaitTimedOut,
    due_runs,
    running,
)
from flowdeck_engine.memory import ClockDispatcher, InMemoryInstanceStore
from flowdeck_engine.steps import BaseStep

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from uuid import UUID

    from flowdeck_engine.clock import Clock
    from flowdeck_engine.context import WorkflowContext
    from flowdeck_engine.definition import WorkflowDefinition
    from flowdeck_engine.enums import WorkflowStatus
    from flowdeck_engine.events import EventBus
    from flowdeck_engine.instance import HumanTask
    from flowdeck_engine.kernel import Command, Event, InstanceState, Kernel
    from flowdeck_engine.ports import Dispatcher, InstanceStore, Interceptor, StepQueue
    from flowdeck_engine.registry import WorkflowRegistry
    from flowdeck_engine.steps import Step

log = logging.getLogger(__name__)
_MAX_CONFLICTS = 10


class _Calls(NamedTuple):
    """Which of a step's optional calls do something (base-class no-ops are skipped)."""

    guard: bool
    on_success: bool
    on_failure: bool
    timeout: float | None
    plain: bool
    """Nothing around ``execute``: no timeout, no hooks."""

    @classmethod
    def of(cls, step: Step) -> _Calls:
        kind = type(step)
        timeout = getattr(step, "timeout", None)
        seconds = timeout.total_seconds() if timeout is not None and step.step_type is not StepType.WEBHOOK else None
        on_success = getattr(kind, "on_success", None) is not BaseStep.on_success
        on_failure = getattr(kind, "on_failure", None) is not BaseStep.on_failure
        guard = getattr(kind, "can_execute", None) is not BaseStep.can_execute
        return cls(guard, on_success, on_failure, seconds, not (on_success or on_failure or seconds is not None))


_ENDS_A_WAIT = frozenset({TaskCompleted, CallbackReceived, WaitFailed})


def _replay(kernel: Kernel, state: InstanceState, events: list[Event]) -> Transition | None:
    """``events`` applied to ``state`` one after another, as one transition (None: all were stale).

    Its commands run only the machine steps still due at the end: one that an earlier event
    made due and a later one reports on already ran.
    """
    commands: list[Command] = []
    at = None
    for event in events:
        transition = kernel.apply(state, event)
        if transition.state is not state:
            commands.extend(transition.commands)
            state, at = transition.state, transition.at
    if at is None:
        return None
    due: dict[tuple[str, int], RunStep] = {}
    for command in commands:
        if type(command) is RunStep and running(state, command.step, command.attempt):
            due[command.step, command.attempt] = command
    kept = [c for c in commands if type(c) is not RunStep]
    kept.extend(due.values())
    return Transition(state, kept, at)


class ExecutionEngine(Protocol):
    """What every Flowdeck engine offers."""

    async def start_workflow(
        self, workflow_name: str, initial_data: Mapping[str, Any] | None = None, version: str | None = None
    ) -> WorkflowInstance:
        """Start a new instance of the workflow (its latest active version unless ``version``)."""
        ...

    async def execute_step(self, step: Step, context: WorkflowContext, previous_result: Any = None) -> Any:
        """Execute a single step against ``context``."""
        ...

    async def complete_human_task(
        self, instance_id: UUID, step_name: str, user_id: str | None, data: Mapping[str, Any]
    ) -> Any:
        """Complete a human task with the user's form data; the workflow goes on."""
        ...

    async def cancel_workflow(self, instance_id: UUID, reason: str) -> Any:
        """Cancel a running or waiting instance."""
        ...

    async def retry(self, instance_id: UUID, from_step: str | None = None) -> Any:
        """Resume a failed instance from its failed step or from ``from_step``."""
        ...


class LocalExecutionEngine:
    """In-process async execution engine.

    ``start_workflow`` returns once the new instance completes, fails or waits (for a person, a
    timer, a callback, or a retry's backoff); branches of a parallel split run concurrently.
    Timers and retries fire from ``clock`` (a :class:`~flowdeck_engine.clock.FakeClock` in tests).
    ``persistence`` is the instance store (in memory by default); ``event_bus`` receives every
    workflow event. With a ``step_queue``, machine steps are not run here: they are handed to the
    queue once due, and a worker's engine runs them with :meth:`resume`.
    """

    def __init__(
        self,
        registry: WorkflowRegistry,
        persistence: InstanceStore | None = None,
        event_bus: EventBus | None = None,
        *,
        clock: Clock | None = None,
        dispatcher: Dispatcher | None = None,
        step_queue: StepQueue | None = None,
        interceptor: Interceptor | None = None,
    ) -> None:
        self.registry = registry
        self.step_queue = step_queue
        self.interceptor = interceptor
        self.persistence: InstanceStore = persistence if persistence is not None else InMemoryInstanceStore()
        self.event_bus = event_bus
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.dispatcher: Dispatcher = dispatcher if dispatcher is not None else ClockDispatcher(self.clock)
        self._calls: dict[Step, _Calls] = {}

    # --- public API ------------------------------------------------------------------------------

    async def start_workflow(
        self,
        workflow_name: str | WorkflowDefinition | type[Any],
        initial_data: Mapping[str, Any] | None = None,
        version: str | None = None,
        *,
        tenant_id: str | None = None,
        created_by: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WorkflowInstance:
        """Start a new instance and run it until it completes, fails or waits.

        ``workflow_name`` may also be a registered definition or workflow class. Raises
        :class:`WorkflowNotFoundError` for an unknown name or an inactive version.
        """
        definition = self.registry.resolve(workflow_name, version)
        if self.interceptor is not None:
            metadata = dict(metadata or {})
            with self.interceptor.starting(definition.name, definition.version, tenant_id, metadata):
                return await self._start(definition, initial_data, tenant_id, created_by, metadata)
        return await self._start(definition, initial_data, tenant_id, created_by, metadata)

    async def _start(
        self,
        definition: WorkflowDefinition,
        initial_data: Mapping[str, Any] | None,
        tenant_id: str | None,
        created_by: str | None,
        metadata: dict[str, Any] | None,
    ) -> WorkflowInstance:
        kernel = self.registry.kernel(definition)
        transition = kernel.start(new_id(), initial_data or {}, self.clock.now())
        instance = WorkflowInstance(
            definition, transition.state, tenant_id=tenant_id, created_by=created_by, metadata=metadata
        )
        await self.persistence.create(instance, transition)
        if self.event_bus is not None:
            await self._emit(None, transition, None, instance)
        await self._drive(instance, kernel, self._carry_out(instance, kernel, transition), at=transition.at)
        return instance

    async def execute_step(self, step: Step, context: WorkflowContext, previous_result: Any = None) -> Any:
        """Run ``step`` once against ``context``: its guard, ``execute`` within its timeout, its hooks.

        Returns the step's result, or None when its guard said no. Exceptions propagate after
        ``on_failure`` ran; a step over its timeout raises :class:`StepTimeoutError`.
        """
        if not await step.can_execute(context):
            return None
        return await self._execute(step, context)

    async def complete_human_task(
        self, instance_id: UUID, step_name: str, user_id: str | None, data: Mapping[str, Any]
    ) -> WorkflowInstance:
        """Complete the open task of ``step_name`` with form ``data``; the workflow goes on.

        Raises :class:`TaskNotFoundError` when that task is not open (already completed, say).
        """
        instance, kernel = await self._load(instance_id)
        event = TaskCompleted(step_name, user_id, dict(data), self.clock.now())
        instance = await self._apply_and_drive(instance, kernel, event)
        step = kernel.steps[step_name]
        if (self._calls.get(step) or self._calls_of(step)).on_success:
            try:
                await step.on_success(instance.context.with_step(step_name), dict(data))
            except Exception:
                log.exception("on_success hook of human step %r failed", step_name)
        return instance

    async def receive_callback(self, instance_id: UUID, step_name: str, payload: Any = None) -> WorkflowInstance:
        """Deliver an external system's callback to the waiting webhook step ``step_name``."""
        instance, kernel = await self._load(instance_id)
        return await self._apply_and_drive(instance, kernel, CallbackReceived(step_name, payload, self.clock.now()))

    async def cancel_workflow(self, instance_id: UUID, reason: str) -> WorkflowInstance:
        """Cancel a running or waiting instance; its open tasks and timers are closed."""
        instance, kernel = await self._load(instance_id)
        return await self._apply_and_drive(instance, kernel, CancelRequested(reason, self.clock.now()))

    async def retry(self, instance_id: UUID, from_step: str | None = None) -> WorkflowInstance:
        """Resume a failed instance from its failed step, or from ``from_step``, with its data as it was."""
        instance, kernel = await self._load(instance_id)
        return await self._apply_and_drive(instance, kernel, RetryRequested(from_step, self.clock.now()))

    async def resume(self, instance_id: UUID) -> WorkflowInstance:
        """Run the instance's machine steps that are due now, from its stored state.

        What a worker calls for a queued instance, and what picks an instance up after a restart.
        Nothing due (already run, canceled, not yet time) is a no-op.
        """
        instance, kernel = await self._load(instance_id)
        ready = due_runs(instance.state, self.clock.now())
        if ready and not instance.status.is_final:
            if self.interceptor is None:
                await self._drive(instance, kernel, ready, inline=True)
            else:
                with self.interceptor.continuing(instance, "resume"):
                    await self._drive(instance, kernel, ready, inline=True)
        return instance

    async def fire_timer(self, instance_id: UUID, step_name: str) -> WorkflowInstance:
        """Fire the timer of ``step_name`` (a scheduler's call; a timer already fired is a no-op)."""
        instance, kernel = await self._load(instance_id)
        return await self._apply_and_drive(instance, kernel, TimerFired(step_name, self.clock.now()))

    async def expire_wait(self, instance_id: UUID, step_name: str) -> WorkflowInstance:
        """The wait of ``step_name`` passed its deadline: a webhook's timeout, a task's escalation."""
        instance, kernel = await self._load(instance_id)
        return await self._apply_and_drive(instance, kernel, WaitTimedOut(step_name, self.clock.now()))

    async def fail_wait(
        self, instance_id: UUID, step_name: str, error: str, error_type: str = "ExternalJobError"
    ) -> WorkflowInstance:
        """The external system behind the waiting callback step ``step_name`` gave up with ``error``:
        the step is recorded failed and the instance fails (retry it like any failed instance).

        Raises :class:`TaskNotFoundError` when that step is not waiting for a callback.
        """
        instance, kernel = await self._load(instance_id)
        event = WaitFailed(step_name, error_type, error, self.clock.now())
        return await self._apply_and_drive(instance, kernel, event)

    async def get_instance(self, instance_id: UUID) -> WorkflowInstance:
        """The instance with this id; raises :class:`InstanceNotFoundError`."""
        return await self.persistence.load(instance_id)

    async def list_instances(
        self, *, workflow_name: str | None = None, status: WorkflowStatus | None = None
    ) -> list[WorkflowInstance]:
        """Instances, oldest first, optionally by workflow and status."""
        return await self.persistence.list_instances(workflow_name=workflow_name, status=status)

    async def get_pending_tasks(
        self,
        *,
        instance_id: UUID | None = None,
        user_id: str | None = None,
        groups: set[str] | frozenset[str] | None = None,
    ) -> list[HumanTask]:
        """Open human tasks; with ``user_id``/``groups``, only those that user may work on."""
        tasks = await self.persistence.list_tasks(instance_id=instance_id, status=TaskStatus.PENDING)
        if user_id is None and groups is None:
            return tasks
        mine = frozenset(groups or ())
        return [t for t in tasks if t.is_for(user_id, mine)]

    # --- the shell -------------------------------------------------------------------------------

    async def _load(self, instance_id: UUID) -> tuple[WorkflowInstance, Kernel]:
        instance = await self.persistence.load(instance_id)
        try:
            return instance, self.registry.kernel(instance.definition)
        except WorkflowNotFoundError:  # a definition object this registry does not hold: look it up by name
            pass
        try:
            definition = self.registry.get_definition(instance.workflow_name, instance.workflow_version)
        except WorkflowNotFoundError:
            raise InvalidTransitionError(
                instance_id, "load", f"its definition {instance.workflow_name!r} is no longer registered"
            ) from None
        return instance, self.registry.kernel(definition)

    async def _apply_and_drive(self, instance: WorkflowInstance, kernel: Kernel, event: Event) -> WorkflowInstance:
        if self.interceptor is not None:
            with self.interceptor.continuing(instance, type(event).__name__):
                instance, ready = await self._apply(instance, kernel, event)
                await self._drive(instance, kernel, ready, at=event.at)
            return instance
        instance, ready = await self._apply(instance, kernel, event)
        await self._drive(instance, kernel, ready, at=event.at)
        return instance

    async def _apply(
        self, instance: WorkflowInstance, kernel: Kernel, event: Event
    ) -> tuple[WorkflowInstance, list[RunStep]]:
        """Apply ``event`` and save it; the machine steps to run now."""
        transition = kernel.apply(instance.state, event)
        if transition.state is instance.state:
            return instance, []
        return await self._commit(instance, kernel, [event], transition)

    async def _commit(
        self, instance: WorkflowInstance, kernel: Kernel, events: list[Event], change: Transition | None
    ) -> tuple[WorkflowInstance, list[RunStep]]:
        """Save ``change``, the transitions of ``events`` from ``instance``'s state, as one change;
        the machine steps to run now.

        When another writer saved the instance meanwhile, the events are applied again to its new
        state (events are facts, not state), so nothing is lost and nothing is applied twice.
        """
        for _ in range(_MAX_CONFLICTS):
            version = instance.version
            before = instance.state
            if change is None:
                change = _replay(kernel, before, events)
                if change is None:
                    return instance, []
            try:
                if self.interceptor is None:
                    await self.persistence.save(instance, change, events[0], version)
                else:
                    with self.interceptor.saving(instance, type(events[0]).__name__):
                        await self.persistence.save(instance, change, events[0], version)
            except ConcurrencyError:
                instance = await self.persistence.load(instance.id)
                change = None
                continue
            if self.event_bus is not None:
                await self._emit(before, change, events[0], instance)
            cause = events[0]
            if type(cause) in _ENDS_A_WAIT:
                self.dispatcher.cancel(instance.id, cause.step)  # type: ignore[union-attr]  # its timeout is moot
            return instance, self._carry_out(instance, kernel, change)
        raise ConcurrencyError(instance.id, instance.version)

    def _carry_out(self, instance: WorkflowInstance, kernel: Kernel, transition: Transition) -> list[RunStep]:
        """Schedule what waits for a time; return the machine steps to run now."""
        ready: list[RunStep] = []
        for command in transition.commands:
            kind = type(command)
            if kind is StepExecution:
                continue
            if kind is RunStep:
                run: RunStep = command  # type: ignore[assignment]
                if run.not_before is None or run.not_before <= transition.at:
                    ready.append(run)
                else:
                    self._wake_at(instance, kernel, run.step, run.not_before, run)
            elif kind is StartTimer:
                timer: StartTimer = command  # type: ignore[assignment]
                self._wake_at(instance, kernel, timer.step, timer.fire_at, TimerFired(timer.step, timer.fire_at))
            elif kind is OpenTask:
                task: OpenTask = command  # type: ignore[assignment]
                if task.escalate_at is not None:
                    self._wake_at(
                        instance, kernel, task.step, task.escalate_at, WaitTimedOut(task.step, task.escalate_at)
                    )
            elif kind is AwaitCallback:
                wait: AwaitCallback = command  # type: ignore[assignment]
                if wait.timeout_at is not None:
                    self._wake_at(
                        instance, kernel, wait.step, wait.timeout_at, WaitTimedOut(wait.step, wait.timeout_at)
                    )
            elif kind is CloseWait:
                self.dispatcher.cancel(instance.id, command.step)  # type: ignore[union-attr]
        return ready

    def _wake_at(self, instance: WorkflowInstance, kernel: Kernel, step: str, when: Any, what: Event | RunStep) -> None:
        instance_id = instance.id

        async def wake() -> None:
            current, kernel_now = await self._load(instance_id)
            if isinstance(what, RunStep):
                await self._drive(current, kernel_now, [what])
            else:
                await self._apply_and_drive(current, kernel_now, what)

        self.dispatcher.schedule(instance_id, step, when, wake)

    async def _drive(
        self,
        instance: WorkflowInstance,
        kernel: Kernel,
        ready: list[RunStep],
        *,
        inline: bool = False,
        at: datetime | None = None,
    ) -> None:
        """Run ready machine steps (due since ``at``), concurrently when several are ready, until
        none is left.

        A chain of machine steps that follow one another is run in one go and saved as one change
        (the steps run at least once either way: a crash before the save runs them again). With a
        step queue (and not ``inline``), the steps go to the queue instead.
        """
        if ready and self.step_queue is not None and not inline:
            await self.step_queue.enqueue(instance, [run.step for run in ready])
            return
        inflight: dict[asyncio.Task[Event], RunStep] = {}
        while ready or inflight:
            if len(ready) == 1 and not inflight:
                instance, ready = await self._run_chain(instance, kernel, ready[0], at or self.clock.now())
                at = None
                continue
            data = instance.state.data
            for run in ready:
                context = instance.context.with_step(run.step, data, run.attempt)
                inflight[asyncio.ensure_future(self._run(instance, kernel, run, data, context))] = run
            ready = []
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                del inflight[task]
                instance, more = await self._apply(instance, kernel, task.result())
                ready.extend(more)
            if ready and self.step_queue is not None and not inline:
                await self.step_queue.enqueue(instance, [run.step for run in ready])
                ready = []

    async def _run_chain(
        self, instance: WorkflowInstance, kernel: Kernel, run: RunStep, started: datetime
    ) -> tuple[WorkflowInstance, list[RunStep]]:
        """Run ``run``, then each machine step that is all it leads to, and save them as one change.

        The change's commands leave out the steps the chain ran (nothing else is to be done about
        them); a step whose outcome is stale (it cannot be: it was just activated) ends the chain.
        The states between the chain's steps are its own: the kernel builds each in the one before.
        """
        state = instance.state
        events: list[Event] = []
        commands: list[Command] = []
        context = instance.context.with_step(run.step, state.data, run.attempt)
        while True:
            event = await self._run(instance, kernel, run, state.data, context, started)
            transition = kernel.apply(state, event, in_place=bool(events))
            if not transition.commands:
                break
            events.append(event)
            state = transition.state
            commands.extend(transition.commands)
            if transition.then is None:
                break  # the end of the chain (several ready steps run concurrently, from _drive)
            commands.pop()  # it is transition.then: run straight on, not carried out
            run = transition.then
            context = context.moved_to(run.step, state.data, run.attempt)
            started = transition.at
        if not events:
            return instance, []
        return await self._commit(instance, kernel, events, Transition(state, commands, transition.at))

    async def _run(
        self,
        instance: WorkflowInstance,
        kernel: Kernel,
        run: RunStep,
        before: dict[str, Any],
        context: WorkflowContext,
        started: datetime | None = None,
    ) -> Event:
        """Run one attempt of a machine step in ``context``, which holds a private copy of the
        instance's data ``before``; the outcome as a kernel event."""
        name = run.step
        step = kernel.steps[name]
        calls = self._calls.get(step) or self._calls_of(step)
        now = self.clock.now
        if started is None:
            started = now()
        try:
            if calls.guard and not await step.can_execute(context):
                return StepSkipped(name, run.attempt, now())
            if self.interceptor is not None:
                with self.interceptor.step(instance, name, run.attempt):
                    result = await self._execute(step, context, calls)
            elif calls.plain:
                result = await step.execute(context)
            else:
                result = await self._execute(step, context, calls)
        except Exception as exc:
            return StepFailed(
                name,
                run.attempt,
                now(),
                started,
                type(exc).__name__,
                str(exc),
                not getattr(exc, "non_retryable", False),
            )
        return StepSucceeded(name, run.attempt, now(), started, context.data, before, result, context.emitted)

    def _calls_of(self, step: Step) -> _Calls:
        calls = self._calls[step] = _Calls.of(step)
        return calls

    async def _execute(self, step: Step, context: WorkflowContext, calls: _Calls | None = None) -> Any:
        calls = calls or self._calls.get(step) or self._calls_of(step)
        try:
            if calls.timeout is not None:
                scope = asyncio.timeout(calls.timeout)
                try:
                    async with scope:
                        result = await step.execute(context)
                except TimeoutError as exc:
                    if scope.expired():
                        raise StepTimeoutError(context.current_step, calls.timeout) from exc
                    raise
            else:
                result = await step.execute(context)
        except Exception as exc:
            if calls.on_failure:
                try:
                    await step.on_failure(context, exc)
                except Exception:
                    log.exception("on_failure hook of step %r failed", context.current_step)
            raise
        if calls.on_success:
            await step.on_success(context, result)
        return result

    async def _emit(self, before: Any, transition: Transition, cause: Event | None, instance: WorkflowInstance) -> None:
        assert self.event_bus is not None
        for event in events_for(before, transition, cause, tenant_id=instance.tenant_id):
            try:
                await self.event_bus.emit(event)
            except Exception:
                log.exception("event bus failed on %s", event.type)
