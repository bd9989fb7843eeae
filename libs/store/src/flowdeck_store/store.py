"""The SQL instance store: the engine's ``InstanceStore`` port on SQLAlchemy.

Every write is one transaction: the fenced update of the instance row
(``UPDATE ... WHERE id = :id AND version = :expected``; nothing written when it matches no row,
and :class:`~flowdeck_engine.ConcurrencyError` raised), the step records, human tasks, pending
work, timers, callback tokens and outbox rows, each table in one batch.

Inside :meth:`SqlInstanceStore.unit` the saves of one engine call are gathered and written
together when the call returns (one transaction per call instead of one per change); outside a
unit each save is written at once, as the port describes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flowdeck_engine import (
    ConcurrencyError,
    InstanceNotFoundError,
    InvalidTransitionError,
    WorkflowInstance,
    WorkflowNotFoundError,
)
from flowdeck_engine.codec import state_from_json
from flowdeck_engine.context import StepExecution
from flowdeck_engine.enums import StepStatus, StepType, TaskStatus
from flowdeck_engine.instance import HumanTask
from flowdeck_store.batching import Batcher, BatchLimits, by_tenant
from flowdeck_store.changes import Change, definition_row_id
from flowdeck_store.definitions import definition_document
from flowdeck_store.exceptions import TenantMismatchError, TenantNotBoundError, UnknownTenantError
from flowdeck_store.models import HumanTaskModel, StepExecutionModel, WorkflowDefinitionModel, WorkflowInstanceModel
from flowdeck_store.tenancy import (
    TENANT_KEY,
    as_tenant_id,
    asyncpg_connection,
    current_tenant,
    guard_sessions,
    is_guarded,
)
from flowdeck_store.writer import write_changes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from uuid import UUID

    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from flowdeck_engine import InstanceState, Transition, WorkflowDefinition, WorkflowRegistry, WorkflowStatus
    from flowdeck_engine.kernel import Event

_KNOWN_TENANTS = 100_000
T = TypeVar("T")


_unit_keys = itertools.count(1)


@dataclass(slots=True)
class Unit:
    """The saves of one engine call, written together when it ends. ``key`` names it for as
    long as anything it held back waits (never reused, unlike an object's id)."""

    tenant_id: UUID
    changes: dict[UUID, Change] = field(default_factory=dict)
    open: bool = True
    key: int = field(default_factory=lambda: next(_unit_keys))


@dataclass(slots=True)
class TaskScoped(Generic[T]):
    """A value for the task that set it, while it is open. Context variables are copied into
    callbacks and tasks started meanwhile (a retry's timer, say): those must not see it."""

    value: T
    task: asyncio.Task[Any] | None = field(default_factory=asyncio.current_task)
    open: bool = True

    def get(self) -> T | None:
        """The value, for its own task while open; else None."""
        return self.value if self.open and self.task is asyncio.current_task() else None


def scoped(var: ContextVar[TaskScoped[T] | None]) -> T | None:
    """``var``'s value for the current task (see :class:`TaskScoped`)."""
    holder = var.get()
    return None if holder is None else holder.get()


_unit: ContextVar[Unit | None] = ContextVar("flowdeck_unit", default=None)
_shared: ContextVar[TaskScoped[tuple[UUID, AsyncSession]] | None] = ContextVar("flowdeck_shared", default=None)


def shared_session(tenant_id: UUID) -> AsyncSession | None:
    """The session of the :meth:`SqlInstanceStore.shared` transaction this task is in, if it is
    ``tenant_id``'s: whoever opens a transaction for that tenant meanwhile should use it (waiting
    for a second pooled connection while holding one can empty the pool)."""
    shared_by = scoped(_shared)
    return shared_by[1] if shared_by is not None and shared_by[0] == tenant_id else None


def _records(transition: Transition) -> list[StepExecution]:
    return [c for c in transition.commands if isinstance(c, StepExecution)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _instance_of(change: Change) -> UUID:
    return change.instance.id


def _same(instance_id: UUID) -> UUID:
    return instance_id


class SqlInstanceStore:
    """Instances, their history, tasks and waits in SQL, for one or many tenants.

    ``sessions`` is a session factory (a session per transaction; concurrent use is fine) or
    one ``AsyncSession`` (used one transaction at a time, committed after each). ``tenant_id`` is
    the tenant to use when neither the call (an instance's own tenant, a unit) nor a
    :func:`~flowdeck_store.tenant_scope` names one. Concurrent writes and loads of one tenant
    share transactions (group commit, see :mod:`flowdeck_store.batching`), within ``batch_limits``.
    """

    def __init__(
        self,
        registry: WorkflowRegistry,
        sessions: AsyncSession | async_sessionmaker[AsyncSession],
        *,
        tenant_id: UUID | str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        batch_limits: BatchLimits | None = None,
    ) -> None:
        self.registry = registry
        self.default_tenant = None if tenant_id is None else as_tenant_id(tenant_id)
        self._session = sessions if isinstance(sessions, AsyncSession) else None
        self._factory = None if isinstance(sessions, AsyncSession) else sessions
        self._lock = asyncio.Lock()
        self._now = clock
        self._definitions: dict[tuple[UUID, str, str], UUID] = {}
        self._definition_locks: dict[tuple[UUID, str, str], asyncio.Lock] = {}
        self._tenants: OrderedDict[UUID, UUID] = OrderedDict()
        self.preloaded: dict[UUID, Any] = {}
        """Rows of :data:`_LOAD` read with something else (a lease): the next load of each
        instance uses its row instead of a round trip; whoever puts one here takes it out."""
        limits = batch_limits or BatchLimits()
        self._writers: Callable[[UUID], Batcher[Change, None]] = by_tenant(
            lambda tenant: Batcher(partial(self._write_batch, tenant), _instance_of, limits)
        )
        self._loaders: Callable[[UUID], Batcher[UUID, WorkflowInstance]] = by_tenant(
            lambda tenant: Batcher(partial(self._load_batch, tenant), _same, limits)
        )

    # --- tenants and transactions ----------------------------------------------------------------

    def tenant_for(self, instance_id: UUID | None = None, explicit: UUID | str | None = None) -> UUID:
        """The tenant to work for: explicit, the current unit's or scope's, the instance's, the default."""
        if explicit is not None:
            return as_tenant_id(explicit)
        unit = _unit.get()
        if unit is not None and unit.open:
            return unit.tenant_id
        scoped = current_tenant()
        if scoped is not None:
            return scoped
        if instance_id is not None:
            known = self._tenants.get(instance_id)
            if known is not None:
                return known
        if self.default_tenant is not None:
            return self.default_tenant
        raise TenantNotBoundError

    def _remember(self, instance_id: UUID, tenant_id: UUID) -> None:
        if tenant_id == self.default_tenant:
            return  # tenant_for falls back to it anyway (a service's engines: every instance they touch)
        self._tenants[instance_id] = tenant_id
        self._tenants.move_to_end(instance_id)
        if len(self._tenants) > _KNOWN_TENANTS:
            self._tenants.popitem(last=False)

    @asynccontextmanager
    async def transaction(self, tenant_id: UUID) -> AsyncIterator[AsyncSession]:
        """A session in a transaction bound to ``tenant_id``, committed when the block ends (inside
        :meth:`shared`: that block's session, committed when it ends)."""
        shared_by = scoped(_shared)
        if shared_by is not None:
            if shared_by[0] != tenant_id:
                raise TenantMismatchError(shared_by[0], tenant_id)
            yield shared_by[1]
            return
        if self._factory is not None:
            async with self._factory() as session:
                if not is_guarded(session.sync_session):
                    guard_sessions(session.sync_session)
                session.info[TENANT_KEY] = tenant_id
                async with session.begin():
                    yield session
            return
        shared = self._session
        assert shared is not None
        async with self._lock:
            if not is_guarded(shared.sync_session):
                guard_sessions(shared.sync_session)
            bound = shared.info.get(TENANT_KEY)
            if shared.in_transaction():
                if bound != tenant_id:
                    raise TenantMismatchError(bound, tenant_id)
                try:
                    yield shared
                except BaseException:
                    await shared.rollback()
                    raise
                await shared.commit()
                return
            shared.info[TENANT_KEY] = tenant_id
            async with shared.begin():
                yield shared

    @asynccontextmanager
    async def shared(self, tenant_id: UUID) -> AsyncIterator[AsyncSession]:
        """One transaction for the block: the caller's own statements on the session it yields, and
        every load and write of this store made inside the block (this task), committed when it
        ends; if the block raises, all of it is rolled back. Fewer round trips for a request that
        reads, then makes one engine call; nothing of it shares a batch with other callers."""
        async with self.transaction(tenant_id) as session:
            holder = TaskScoped((tenant_id, session))
            token = _shared.set(holder)
            try:
                yield session
            finally:
                holder.open = False
                _shared.reset(token)

    # --- units -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def unit(self, tenant_id: UUID) -> AsyncIterator[Unit]:
        """Gather the saves made inside the block; write them in one transaction when it ends.

        Raises :class:`~flowdeck_engine.ConcurrencyError` when an instance changed meanwhile (then
        nothing is written). When the block raises, nothing is written either.
        """
        unit = Unit(tenant_id)
        token = _unit.set(unit)
        try:
            yield unit
        except BaseException:
            unit.open = False
            raise
        finally:
            _unit.reset(token)
        unit.open = False
        if unit.changes:
            await self._write(tenant_id, list(unit.changes.values()))

    # --- the port --------------------------------------------------------------------------------

    async def create(self, instance: WorkflowInstance, transition: Transition) -> None:
        """Store a new instance (written at once, or with the rest of its unit)."""
        tenant = self.tenant_for(explicit=instance.tenant_id)
        if instance.tenant_id is None:
            instance.context.tenant_id = str(tenant)
        definition_id = await self._definition_id(tenant, instance)
        change = Change(instance, tenant, definition_id, created=True, expected_version=0, start=None)
        change.add(None, transition, None)
        self._remember(instance.id, tenant)
        unit = _unit.get()
        if unit is not None and unit.open:
            instance.advance(transition.state, _records(transition))
            unit.changes[instance.id] = change
            return
        undo = _snapshot(instance)
        instance.advance(transition.state, _records(transition))
        try:
            await self._write(tenant, [change])
        except BaseException:
            undo()
            raise

    async def save(
        self, instance: WorkflowInstance, transition: Transition, cause: Event, expected_version: int
    ) -> None:
        """Apply ``transition`` if the stored version is ``expected_version``, else raise ConcurrencyError."""
        tenant = self.tenant_for(instance.id, instance.tenant_id)
        unit = _unit.get()
        if unit is not None and unit.open:
            change = unit.changes.get(instance.id)
            if change is None:
                change = Change(
                    instance, tenant, self._known_definition(tenant, instance), False, expected_version, instance.state
                )
                unit.changes[instance.id] = change
            elif change.instance is not instance:
                raise ConcurrencyError(instance.id, expected_version)
            change.add(instance.state, transition, cause)
            instance.advance(transition.state, _records(transition))
            return
        change = Change(
            instance, tenant, self._known_definition(tenant, instance), False, expected_version, instance.state
        )
        change.add(instance.state, transition, cause)
        undo = _snapshot(instance)
        instance.advance(transition.state, _records(transition))
        try:
            await self._write(tenant, [change])
        except BaseException:
            undo()
            raise

    async def load(self, instance_id: UUID) -> WorkflowInstance:
        """The stored instance (a new object); raises :class:`InstanceNotFoundError`."""
        tenant = self.tenant_for(instance_id)
        row = self.preloaded.pop(instance_id, None)
        if row is not None and row["tenant_id"] == tenant:  # read moments ago (with a lease, say)
            instance = self._instance(row, row["steps"] or ())
            self._remember(instance_id, tenant)
            return instance
        if scoped(_shared) is None:
            instance = await self._loaders(tenant).submit(instance_id)
        else:  # the batch runs in a task of its own, outside the shared transaction
            (loaded,) = await self._load_batch(tenant, [instance_id])
            if isinstance(loaded, BaseException):
                raise loaded
            instance = loaded
        self._remember(instance_id, tenant)
        return instance

    async def _load_batch(self, tenant: UUID, ids: Sequence[UUID]) -> list[WorkflowInstance | BaseException]:
        """Several instances of one tenant with their step history, read in one transaction (on
        PostgreSQL with asyncpg in one round trip)."""
        async with self.transaction(tenant) as session:
            raw = await asyncpg_connection(session)
            if raw is not None:
                rows: dict[UUID, Any] = {row["id"]: row for row in await raw.fetch(_LOAD, tenant, list(ids))}
                steps: Mapping[UUID, Sequence[Any]] = {key: row["steps"] or () for key, row in rows.items()}
            else:
                rows, steps = await self._load_portable(session, tenant, ids)
        out: list[WorkflowInstance | BaseException] = []
        for instance_id in ids:
            row = rows.get(instance_id)
            if row is None:
                out.append(InstanceNotFoundError(instance_id))
                continue
            try:
                out.append(self._instance(row, steps.get(instance_id, ())))
            except InvalidTransitionError as exc:
                out.append(exc)
        return out

    @staticmethod
    async def _load_portable(
        session: AsyncSession, tenant: UUID, ids: Sequence[UUID]
    ) -> tuple[dict[UUID, Any], Mapping[UUID, Sequence[Any]]]:
        rows: dict[UUID, Any] = {
            row.id: _InstanceRow.of(row)
            for row in (
                await session.execute(
                    select(WorkflowInstanceModel).where(
                        WorkflowInstanceModel.tenant_id == tenant, WorkflowInstanceModel.id.in_(ids)
                    )
                )
            ).scalars()
        }
        steps: dict[UUID, list[tuple[Any, ...]]] = {}
        if rows:
            for step in (
                await session.execute(
                    select(StepExecutionModel)
                    .where(StepExecutionModel.tenant_id == tenant, StepExecutionModel.instance_id.in_(list(rows)))
                    .order_by(StepExecutionModel.instance_id, StepExecutionModel.seq)
                )
            ).scalars():
                steps.setdefault(step.instance_id, []).append(_step_tuple(step))
        return rows, steps

    async def list_instances(
        self, *, workflow_name: str | None = None, status: WorkflowStatus | None = None
    ) -> list[WorkflowInstance]:
        """The tenant's instances, oldest first, optionally by workflow and status."""
        tenant = self.tenant_for()
        model = WorkflowInstanceModel
        query = select(model).where(model.tenant_id == tenant).order_by(model.started_at, model.id)
        if workflow_name is not None:
            query = query.where(model.workflow_name == workflow_name)
        if status is not None:
            query = query.where(model.status == status.value)
        async with self.transaction(tenant) as session:
            rows = (await session.execute(query)).scalars().all()
            ids = [r.id for r in rows]
            steps = (
                (
                    await session.execute(
                        select(StepExecutionModel)
                        .where(StepExecutionModel.tenant_id == tenant, StepExecutionModel.instance_id.in_(ids))
                        .order_by(StepExecutionModel.instance_id, StepExecutionModel.seq)
                    )
                )
                .scalars()
                .all()
                if ids
                else []
            )
        by_instance: dict[UUID, list[tuple[Any, ...]]] = {}
        for step in steps:
            by_instance.setdefault(step.instance_id, []).append(_step_tuple(step))
        return [self._instance(_InstanceRow.of(r), by_instance.get(r.id, [])) for r in rows]

    async def list_tasks(self, *, instance_id: UUID | None = None, status: TaskStatus | None = None) -> list[HumanTask]:
        """The tenant's human tasks, oldest first, optionally by instance and status."""
        tenant = self.tenant_for(instance_id)
        model = HumanTaskModel
        query = select(model).where(model.tenant_id == tenant).order_by(model.created_at, model.id)
        if instance_id is not None:
            query = query.where(model.instance_id == instance_id)
        if status is not None:
            query = query.where(model.status == status.value)
        async with self.transaction(tenant) as session:
            rows = (await session.execute(query)).scalars().all()
        return [task_from_row(r) for r in rows]

    # --- helpers ---------------------------------------------------------------------------------

    async def _write(self, tenant: UUID, changes: Sequence[Change]) -> None:
        """Write ``changes`` (through the tenant's group commit when there is one)."""
        try:
            if len(changes) == 1 and scoped(_shared) is None:
                await self._writers(tenant).submit(changes[0])
                return
            for result in await self._write_batch(tenant, changes):
                if result is not None:
                    raise result
        except IntegrityError as exc:
            if "tenant" in str(exc.orig):
                raise UnknownTenantError(tenant) from exc
            raise

    async def _write_batch(self, tenant: UUID, changes: Sequence[Change]) -> list[BaseException | None]:
        """Write ``changes`` in one transaction; per change None, or the ConcurrencyError of a failed fence."""
        async with self.transaction(tenant) as session:
            failed = await write_changes(session, tenant, changes, self._now())
        return [
            ConcurrencyError(c.instance.id, c.expected_version) if c.instance.id in failed else None for c in changes
        ]

    def _known_definition(self, tenant: UUID, instance: WorkflowInstance) -> UUID:
        key = (tenant, instance.workflow_name, instance.workflow_version)
        return self._definitions.get(key) or definition_row_id(tenant, *key[1:])

    async def _definition_id(self, tenant: UUID, instance: WorkflowInstance) -> UUID:
        """The id of the tenant's row for the instance's definition, stored first when missing."""
        key = (tenant, instance.workflow_name, instance.workflow_version)
        known = self._definitions.get(key)
        if known is not None:
            return known
        async with self._definition_locks.setdefault(key, asyncio.Lock()):
            known = self._definitions.get(key)
            if known is None:
                try:
                    known = await self._store_definition(tenant, instance.definition)
                except IntegrityError as exc:  # another process stored it first, or no such tenant
                    known = await self._find_definition(tenant, instance.definition)
                    if known is None:
                        raise UnknownTenantError(tenant) from exc
                self._definitions[key] = known
                shared = scoped(_shared)
                if shared is not None:  # the row may be this transaction's: forgotten if it rolls back
                    event.listen(
                        shared[1].sync_session, "after_rollback", lambda _: self._definitions.pop(key, None), once=True
                    )
        return known

    async def _find_definition(self, tenant: UUID, definition: WorkflowDefinition) -> UUID | None:
        model = WorkflowDefinitionModel
        async with self.transaction(tenant) as session:
            return (
                await session.execute(
                    select(model.id).where(
                        model.tenant_id == tenant, model.name == definition.name, model.version == definition.version
                    )
                )
            ).scalar_one_or_none()

    async def _store_definition(self, tenant: UUID, definition: WorkflowDefinition) -> UUID:
        found = await self._find_definition(tenant, definition)
        if found is not None:
            return found
        found = definition_row_id(tenant, definition.name, definition.version)
        now = self._now()
        async with self.transaction(tenant) as session:
            await session.execute(
                insert(cast("Table", WorkflowDefinitionModel.__table__)),
                [
                    {
                        "id": found,
                        "tenant_id": tenant,
                        "name": definition.name,
                        "version": definition.version,
                        "description": definition.description or None,
                        "definition_json": definition_document(definition),
                        "is_active": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
        return found

    def _instance(self, row: Any, steps: Sequence[Sequence[Any]]) -> WorkflowInstance:
        """The instance of ``row`` (an :class:`_InstanceRow` or a record of :data:`_LOAD`) and its
        step history (tuples in the order of :data:`_STEP_COLUMNS`)."""
        try:
            definition = self.registry.get_definition(row["workflow_name"], row["workflow_version"])
        except WorkflowNotFoundError:
            raise InvalidTransitionError(
                row["id"], "load", f"its definition {row['workflow_name']!r} is no longer registered"
            ) from None
        state = state_from_json({**row["kernel_state"], "data": row["context_data"]})
        instance = WorkflowInstance(
            definition,
            state,
            tenant_id=str(row["tenant_id"]),
            created_by=row["created_by"],
            metadata=dict(row["metadata"] or {}),
            version=row["version"],
        )
        instance.step_history.extend(
            StepExecution(
                name,
                StepType(step_type),
                StepStatus(status),
                started_at,
                completed_at,
                attempt,
                output,
                error,
                completed_by,
            )
            for name, step_type, status, started_at, completed_at, attempt, output, error, completed_by in steps
        )
        instance.context.current_step = next(iter(state.active), "")
        return instance


_STEP_COLUMNS = ("step_name", "step_type", "status", "started_at", "completed_at", "attempt", "output_data", "error",
                 "completed_by")  # fmt: skip
LOAD_COLUMNS = (
    "{w}.id, {w}.tenant_id, {w}.workflow_name, {w}.workflow_version, {w}.kernel_state, {w}.context_data, "  # noqa: S608 (constants)
    "{w}.metadata, {w}.created_by, {w}.version, "
    f"(SELECT array_agg(ROW({', '.join('s.' + c for c in _STEP_COLUMNS)}) ORDER BY s.seq) "
    "FROM workflow_step_executions AS s WHERE s.tenant_id = $1 AND s.instance_id = {w}.id) AS steps"
)
"""What a load reads of the instance row ``{w}`` (the tenant is $1), its step history included."""
_LOAD = (
    f"SELECT {LOAD_COLUMNS.format(w='w')} "  # noqa: S608 (built from constants)
    "FROM workflow_instances AS w WHERE w.tenant_id = $1 AND w.id = ANY($2::uuid[])"
)
"""Instances with their step history in one round trip. The history is a correlated subquery: one
probe of the (tenant_id, instance_id, seq) index per instance, whatever the planner guesses."""


class _InstanceRow(dict[str, Any]):
    """An instance model's columns by name, as a :data:`_LOAD` record has them."""

    @classmethod
    def of(cls, row: WorkflowInstanceModel) -> _InstanceRow:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            workflow_name=row.workflow_name,
            workflow_version=row.workflow_version,
            kernel_state=row.kernel_state,
            context_data=row.context_data,
            metadata=row.metadata_,
            created_by=row.created_by,
            version=row.version,
        )


def _step_tuple(step: StepExecutionModel) -> tuple[Any, ...]:
    return tuple(getattr(step, name) for name in _STEP_COLUMNS)


def task_from_row(row: HumanTaskModel) -> HumanTask:
    """The engine's view of a human task row."""
    return HumanTask(
        row.instance_id,
        row.workflow_name,
        row.step_name,
        row.title,
        row.description or "",
        row.form_schema,
        row.assignee_id,
        tuple(row.candidate_groups or ()),
        row.due_at,
        row.reminder_at,
        row.created_at,
        str(row.tenant_id),
        row.id,
        TaskStatus(row.status),
        row.completed_at,
        row.completed_by,
    )


def _snapshot(instance: WorkflowInstance) -> Callable[[], None]:
    """A function that puts ``instance`` back as it is now (when a write fails)."""
    state: InstanceState = instance.state
    data: dict[str, Any] = instance.context.data
    current = instance.context.current_step
    history = len(instance.step_history)
    version = instance.version

    def undo() -> None:
        instance.state = state
        instance.context.data = data
        instance.context.current_step = current
        del instance.step_history[history:]
        instance.version = version

    return undo
