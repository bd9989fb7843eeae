"""The persistent engine: the local engine's shell over the SQL instance store.

No transition logic lives here (nor in the store): the kernel decides, the shell runs steps, and
the store writes each change down. What this adds is the unit of work: by default every public
call (start, complete a task, deliver a callback, cancel, retry) is written as ONE transaction
when the call has run as far as it can (the instance waits or ends), fenced on the version it
loaded. A crash before that commit leaves nothing behind, and the call can be made again (steps
run at least once either way). With ``commit_each_change=True`` every change is its own
transaction instead, as the shell saves it.

Events and step-queue requests are held back until the unit commits (a worker woken earlier could
load the state from before it). Workers and schedulers call :meth:`resume`, :meth:`fire_timer` and
:meth:`expire_wait`, each one unit of work too; a worker's lease is checked in the commit.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flowdeck_engine import ConcurrencyError, LocalExecutionEngine
from flowdeck_engine.kernel import due_runs
from flowdeck_store.durable import DurableInstanceStore
from flowdeck_store.store import TaskScoped, _unit, scoped
from flowdeck_store.tenancy import as_tenant_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from flowdeck_engine import Clock, Dispatcher, EventBus, WorkflowDefinition, WorkflowEvent, WorkflowInstance
    from flowdeck_engine.ports import Interceptor, StepQueue
    from flowdeck_engine.registry import WorkflowRegistry
    from flowdeck_store.leases import Lease

log = logging.getLogger(__name__)
T = TypeVar("T")
_CALL_ATTEMPTS = 5
_held: ContextVar[TaskScoped[list[tuple[PersistentExecutionEngine, int]]] | None] = ContextVar(
    "flowdeck_held_units", default=None
)
"""Inside :meth:`PersistentExecutionEngine.transaction`: the units whose release waits for its commit."""


class _AfterCommitBus:
    """Hands events to the real bus only once the change they describe is committed."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.held: dict[int, list[WorkflowEvent]] = {}

    async def emit(self, event: WorkflowEvent) -> None:
        unit = _unit.get()
        if unit is not None and unit.open:
            self.held.setdefault(unit.key, []).append(event)
            return
        await self.bus.emit(event)

    async def release(self, key: int, committed: bool) -> None:
        events = self.held.pop(key, [])
        if not committed:
            return
        for event in events:
            try:
                await self.bus.emit(event)
            except Exception:
                log.exception("event bus failed on %s", event.type)


class _AfterCommitQueue:
    """Hands instances to the real step queue only once the change that made their steps due is
    committed. A failed hand-over is logged, not raised: the change is durable, and the
    scheduler's reconciler re-sends what no worker picked up."""

    def __init__(self, queue: StepQueue) -> None:
        self.queue = queue
        self.held: dict[int, dict[UUID, WorkflowInstance]] = {}

    async def enqueue(self, instance: WorkflowInstance, steps: list[str]) -> None:
        unit = _unit.get()
        if unit is not None and unit.open:
            self.held.setdefault(unit.key, {})[instance.id] = instance
            return
        await self._send(instance)

    async def release(self, key: int, committed: bool) -> None:
        instances = self.held.pop(key, {})
        if not committed:
            return
        many = getattr(self.queue, "enqueue_many", None)
        if many is None:
            for instance in instances.values():
                await self._send(instance)
            return
        due = [(instance, steps) for instance in instances.values() if (steps := _due(instance))]
        try:
            await many(due)  # one round trip for all of them
        except Exception:
            log.exception("could not enqueue %d instances (the reconciler will)", len(due))

    async def _send(self, instance: WorkflowInstance) -> None:
        due = _due(instance)
        if not due:
            return
        try:
            await self.queue.enqueue(instance, due)
        except Exception:
            log.exception("could not enqueue instance %s (the reconciler will)", instance.id)


def _due(instance: WorkflowInstance) -> list[str]:
    """The steps of ``instance`` due now; a retry's backoff (``due_at`` set) is the scheduler's to
    send when due."""
    return [] if instance.status.is_final else [run.step for run in due_runs(instance.state)]


@dataclass(frozen=True, slots=True)
class Start:
    """One start of :meth:`PersistentExecutionEngine.start_many`."""

    definition: WorkflowDefinition
    data: Mapping[str, Any] | None = None
    created_by: str | None = None
    metadata: dict[str, Any] | None = None
    around: AbstractContextManager[object] | None = None
    """Entered around this start (the trace context of the request that asked for it, say)."""


class PersistentExecutionEngine(LocalExecutionEngine):
    """The seeds' drop-in replacement for :class:`~flowdeck_engine.LocalExecutionEngine`, durable.

    ``session`` is an ``async_sessionmaker`` (recommended: each transaction takes its own session,
    so concurrent calls are fine) or one ``AsyncSession`` (calls then take turns on it).
    ``tenant_id`` is the tenant used when a call names none; ``start_workflow(..., tenant_id=...)``
    names one for the new instance, and later calls on that instance find it again.
    """

    persistence: DurableInstanceStore

    def __init__(
        self,
        registry: WorkflowRegistry,
        session: AsyncSession | async_sessionmaker[AsyncSession],
        event_bus: EventBus | None = None,
        *,
        tenant_id: UUID | str | None = None,
        commit_each_change: bool = False,
        clock: Clock | None = None,
        dispatcher: Dispatcher | None = None,
        step_queue: StepQueue | None = None,
        interceptor: Interceptor | None = None,
    ) -> None:
        self._bus = None if event_bus is None else _AfterCommitBus(event_bus)
        self._queue = None if step_queue is None else _AfterCommitQueue(step_queue)
        super().__init__(
            registry,
            DurableInstanceStore(registry, session, tenant_id=tenant_id),
            self._bus,
            clock=clock,
            dispatcher=dispatcher,
            step_queue=self._queue,
            interceptor=interceptor,
        )
        self.commit_each_change = commit_each_change

    async def start_workflow(
        self,
        workflow_name: str | WorkflowDefinition | type[Any],
        initial_data: Mapping[str, Any] | None = None,
        version: str | None = None,
        *,
        tenant_id: UUID | str | None = None,
        created_by: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WorkflowInstance:
        """Start a new instance for ``tenant_id`` (else the engine's tenant) and run it until it waits or ends."""
        tenant = self.persistence.tenant_for(explicit=tenant_id)
        start = super().start_workflow
        return await self._call(
            tenant,
            lambda: start(
                workflow_name, initial_data, version, tenant_id=str(tenant), created_by=created_by, metadata=metadata
            ),
            attempts=1,
        )

    async def start_many(
        self, tenant_id: UUID | str, starts: Sequence[Start]
    ) -> list[WorkflowInstance | BaseException]:
        """Start several instances of ``tenant_id`` as one unit of work: their changes are written
        in one statement (inside :meth:`transaction`, in its transaction) and their events and
        queued steps go out once that commits. Per start, its instance or the error that refused
        it before it saved anything; a start that fails after saving fails the whole call (nothing
        of it is written: run the starts again one by one to find the culprit)."""
        tenant = self.persistence.tenant_for(explicit=tenant_id)
        start = super().start_workflow

        async def run() -> list[WorkflowInstance | BaseException]:
            unit = _unit.get()
            assert unit is not None
            out: list[WorkflowInstance | BaseException] = []
            for item in starts:
                saved = len(unit.changes)
                try:
                    with item.around or nullcontext():
                        instance = await start(
                            item.definition,
                            item.data,
                            item.definition.version,
                            tenant_id=str(tenant),
                            created_by=item.created_by,
                            metadata=item.metadata,
                        )
                    out.append(instance)
                except Exception as exc:
                    if len(unit.changes) != saved:
                        raise
                    out.append(exc)
            return out

        return await self._call(tenant, run, attempts=1)

    async def complete_human_task(
        self, instance_id: UUID, step_name: str, user_id: str | None, data: Mapping[str, Any]
    ) -> WorkflowInstance:
        """Complete the open task of ``step_name``. Of concurrent completions exactly one wins; the
        others raise :class:`~flowdeck_engine.TaskNotFoundError` and change nothing."""
        complete = super().complete_human_task
        return await self._call(
            self.persistence.tenant_for(instance_id), lambda: complete(instance_id, step_name, user_id, data)
        )

    async def receive_callback(self, instance_id: UUID, step_name: str, payload: Any = None) -> WorkflowInstance:
        """Deliver an external system's callback to the waiting webhook step ``step_name``."""
        receive = super().receive_callback
        return await self._call(
            self.persistence.tenant_for(instance_id), lambda: receive(instance_id, step_name, payload)
        )

    async def fail_wait(
        self, instance_id: UUID, step_name: str, error: str, error_type: str = "ExternalJobError"
    ) -> WorkflowInstance:
        """Fail the waiting callback step ``step_name`` (an external job given up on): the instance fails."""
        fail = super().fail_wait
        return await self._call(
            self.persistence.tenant_for(instance_id), lambda: fail(instance_id, step_name, error, error_type)
        )

    async def cancel_workflow(self, instance_id: UUID, reason: str) -> WorkflowInstance:
        """Cancel a running or waiting instance; its open tasks, timers and callbacks are closed."""
        cancel = super().cancel_workflow
        return await self._call(self.persistence.tenant_for(instance_id), lambda: cancel(instance_id, reason))

    async def retry(self, instance_id: UUID, from_step: str | None = None) -> WorkflowInstance:
        """Resume a failed instance from its failed step, or from ``from_step``."""
        retry = super().retry
        return await self._call(self.persistence.tenant_for(instance_id), lambda: retry(instance_id, from_step))

    async def resume(self, instance_id: UUID, *, lease: Lease | None = None) -> WorkflowInstance:
        """Run the instance's due machine steps as one unit of work (a worker's job).

        With ``lease``, the commit happens only while the lease holds, else it raises
        :class:`~flowdeck_store.StaleLeaseError` and writes nothing.
        """
        resume = super().resume
        if lease is None:
            return await self._call(self.persistence.tenant_for(instance_id), lambda: resume(instance_id))
        self.persistence.hold(lease)
        try:
            return await self._call(self.persistence.tenant_for(instance_id), lambda: resume(instance_id))
        finally:
            self.persistence.drop(lease)

    async def fire_timer(self, instance_id: UUID, step_name: str) -> WorkflowInstance:
        """Fire the timer of ``step_name`` (a timer already fired is a no-op)."""
        fire = super().fire_timer
        return await self._call(self.persistence.tenant_for(instance_id), lambda: fire(instance_id, step_name))

    async def expire_wait(self, instance_id: UUID, step_name: str) -> WorkflowInstance:
        """The wait of ``step_name`` passed its deadline (a webhook's timeout, a task's escalation)."""
        expire = super().expire_wait
        return await self._call(self.persistence.tenant_for(instance_id), lambda: expire(instance_id, step_name))

    @asynccontextmanager
    async def transaction(self, tenant_id: UUID | str | None = None) -> AsyncIterator[AsyncSession]:
        """One transaction for the caller's reads on the yielded session and the calls of this
        engine made inside the block (see :meth:`DurableInstanceStore.shared`): a request that
        reads, checks, then completes a task pays for one transaction, not three. Events and
        queued steps of those calls are released once it has committed; if the block raises,
        nothing of it is written. Machine steps that the calls run in this process (an engine
        without a step queue) run inside the transaction too, holding its connection. Inside
        another engine's (or this engine's) ``transaction()`` for the same tenant, the block is
        part of that transaction: nothing of it is released before that one commits."""
        if self.commit_each_change:
            raise ValueError("engine.transaction() needs the unit of work (commit_each_change=False)")
        tenant = self.persistence.tenant_for(explicit=tenant_id)
        if scoped(_held) is not None:  # nested: the outer block commits, and releases, all of it
            async with self.persistence.transaction(tenant) as session:
                yield session
            return
        holder: TaskScoped[list[tuple[PersistentExecutionEngine, int]]] = TaskScoped([])
        token = _held.set(holder)
        committed = False
        try:
            async with self.persistence.shared(tenant) as session:
                yield session
            committed = True
        finally:
            holder.open = False
            _held.reset(token)
            for engine, unit_key in holder.value:
                await engine._release(unit_key, committed)

    async def _release(self, unit_key: int, committed: bool) -> None:
        if self._bus is not None:
            await self._bus.release(unit_key, committed)
        if self._queue is not None:
            await self._queue.release(unit_key, committed)

    async def _call(self, tenant: UUID, run: Callable[[], Awaitable[T]], attempts: int = _CALL_ATTEMPTS) -> T:
        """Run one public call as one unit of work; on a conflict run it again on the fresh state."""
        if self.commit_each_change:
            return await run()
        tenant = as_tenant_id(tenant)
        held = scoped(_held)
        for attempt in range(1, attempts + 1):
            unit_key = 0
            written = False
            try:
                async with self.persistence.unit(tenant) as unit:
                    unit_key = unit.key
                    result = await run()
                written = True
                return result
            except ConcurrencyError:
                if attempt == attempts:
                    raise
            finally:
                if written and held is not None:
                    held.append((self, unit_key))  # committed (or not) with the caller's transaction
                else:
                    await self._release(unit_key, written)
        raise AssertionError("unreachable")  # pragma: no cover
