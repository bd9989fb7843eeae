"""Per-tenant registries and engines: each tenant's definitions are its own.

A tenant's definitions are compiled from its ``workflow_definitions`` rows the first time they are
needed and kept in that tenant's registry (versions are immutable, so the cache never goes stale;
which version is *active* is always read from the database).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy import select

from flowdeck_engine import InstanceNotFoundError, WorkflowNotFoundError, WorkflowRegistry
from flowdeck_engine.documents import Platform, load_definition
from flowdeck_runtime.tenancy import in_tenant
from flowdeck_store import PersistentExecutionEngine, WorkflowDefinitionModel, WorkflowInstanceModel, bind_tenant
from flowdeck_store.store import shared_session

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from flowdeck_engine import Clock, Dispatcher, EventBus, Interceptor, StepQueue, WorkflowDefinition


class Tenants:
    """Sessions bound to one tenant, and each tenant's registry and engine (an LRU of them)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        platform: Platform | None = None,
        event_bus: EventBus | None = None,
        clock: Clock | None = None,
        interceptor: Interceptor | None = None,
        step_queue: StepQueue | None = None,
        dispatcher: Dispatcher | None = None,
        max_cached: int = 512,
    ) -> None:
        """``step_queue`` (production): machine steps go to workers instead of running here;
        ``dispatcher``: how waits are scheduled (in-process by default)."""
        self.sessions = sessions
        self.platform = platform or Platform()
        self._bus = event_bus
        self._clock = clock
        self._interceptor = interceptor
        self.step_queue = step_queue
        self._dispatcher = dispatcher
        self._max = max_cached
        self._engines: OrderedDict[UUID, PersistentExecutionEngine] = OrderedDict()

    @asynccontextmanager
    async def transaction(self, tenant: UUID) -> AsyncIterator[AsyncSession]:
        """A session in a transaction for ``tenant`` (row-level security applies), committed at the
        end; inside an engine's :meth:`~flowdeck_store.PersistentExecutionEngine.transaction` for
        ``tenant``, that transaction (committed when it ends)."""
        joined = shared_session(tenant)
        if joined is not None:
            yield joined
            return
        async with self.sessions() as session:
            bind_tenant(session, tenant)
            async with session.begin():
                yield session

    def engine(self, tenant: UUID) -> PersistentExecutionEngine:
        """The tenant's engine (its registry holds the definitions loaded so far)."""
        engine = self._engines.get(tenant)
        if engine is None:
            engine = PersistentExecutionEngine(
                WorkflowRegistry(),
                self.sessions,
                self._bus,
                tenant_id=tenant,
                clock=self._clock,
                dispatcher=self._dispatcher,
                step_queue=self.step_queue,
                interceptor=self._interceptor,
            )
            self._engines[tenant] = engine
            if len(self._engines) > self._max:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(tenant)
        return engine

    async def prepare(self, tenant: UUID, instance_id: UUID) -> PersistentExecutionEngine:
        """The tenant's engine, ready to load ``instance_id`` (its definition compiled); raises
        :class:`InstanceNotFoundError` when the tenant has no such instance."""
        model = WorkflowInstanceModel
        async with self.transaction(tenant) as session:
            found = (
                await session.execute(
                    select(model.workflow_name, model.workflow_version).where(
                        in_tenant(model, tenant), model.id == instance_id
                    )
                )
            ).one_or_none()
        if found is None:
            raise InstanceNotFoundError(instance_id)
        await self.definition(tenant, found[0], found[1])
        return self.engine(tenant)

    async def definition(self, tenant: UUID, name: str, version: str) -> WorkflowDefinition:
        """The compiled definition ``name`` at ``version`` of ``tenant``; raises
        :class:`WorkflowNotFoundError` when it has none. Compiling has no await in it, so each
        version compiles once per process without a lock (a caller holding a connection must
        never wait on another that waits for one: under load that empties the pool)."""
        registry = self.engine(tenant).registry
        if registry.has_definition(name, version):
            return registry.get_definition(name, version)
        model = WorkflowDefinitionModel
        query = select(model.definition_json).where(
            in_tenant(model, tenant), model.name == name, model.version == version
        )
        async with self.transaction(tenant) as session:
            document = (await session.execute(query)).scalar_one_or_none()
        if document is None:
            raise WorkflowNotFoundError(name, version)
        if not registry.has_definition(name, version):  # a concurrent caller may have compiled it meanwhile
            registry.register_definition(load_definition(document, platform=self.platform))
        return registry.get_definition(name, version)
