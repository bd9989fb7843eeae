"""PersistentExecutionEngine on a real database (PostgreSQL as the app role, and SQLite)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_engine import (
    BaseHumanStep,
    BaseMachineStep,
    ConcurrencyError,
    Edge,
    Escalation,
    InMemoryEventBus,
    InstanceNotFoundError,
    InvalidTransitionError,
    RetryPolicy,
    StepStatus,
    TaskStatus,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowStatus,
)
from flowdeck_engine.kernel import TaskCompleted
from flowdeck_store import (
    HumanTaskModel,
    OutboxEventModel,
    PendingWorkModel,
    PersistentExecutionEngine,
    StepExecutionModel,
    TenantMismatchError,
    TenantNotBoundError,
    TimerModel,
    UnknownTenantError,
    WebhookSubscriptionModel,
    WorkflowInstanceModel,
    bind_tenant,
)
from tests.integration.conftest import Database, NewTenant
from tests.integration.workflows import Approve, SetFlag, linear, registry

Sessions = async_sessionmaker[AsyncSession]


async def count(sessions: Sessions, tenant: uuid.UUID, model: type, **where: object) -> int:
    async with sessions() as session:
        bind_tenant(session, tenant)
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return int((await session.execute(query)).scalar_one())


@pytest.mark.parametrize("each_change", [False, True], ids=["per-call", "per-change"])
async def test_state_survives_a_new_engine(sessions: Sessions, new_tenant: NewTenant, each_change: bool) -> None:
    tenant = await new_tenant("acme")
    first = PersistentExecutionEngine(registry(), sessions, commit_each_change=each_change)
    started = await first.start_workflow("approval", {"order": 7}, tenant_id=str(tenant), created_by="ann")
    assert started.status is WorkflowStatus.WAITING
    del first  # "restart": nothing of the first engine is left

    second = PersistentExecutionEngine(registry(), sessions, tenant_id=tenant, commit_each_change=each_change)
    loaded = await second.get_instance(started.id)
    assert loaded is not started
    assert (loaded.status, loaded.data, loaded.current_step) == (
        WorkflowStatus.WAITING,
        {"order": 7, "s1": True},
        "approve",
    )
    assert [t.step_name for t in await second.get_pending_tasks(groups={"managers"})] == ["approve"]

    done = await second.complete_human_task(started.id, "approve", "bob", {"approved": True})
    assert done.status is WorkflowStatus.COMPLETED
    again = await PersistentExecutionEngine(registry(), sessions, tenant_id=tenant).get_instance(started.id)
    assert again.data == {"order": 7, "s1": True, "approved": True, "s3": True}
    assert [(r.step_name, r.status) for r in again.step_history] == [
        ("s1", StepStatus.SUCCEEDED),
        ("approve", StepStatus.SUCCEEDED),
        ("s3", StepStatus.SUCCEEDED),
    ]
    assert again.step_history[1].completed_by == "bob"
    assert again.version == done.version
    (task,) = await second.persistence.list_tasks(instance_id=started.id)
    assert (task.status, task.completed_by) == (TaskStatus.COMPLETED, "bob")
    assert await count(sessions, tenant, PendingWorkModel) == 0
    assert await count(sessions, tenant, OutboxEventModel, instance_id=started.id, event_type="WorkflowCompleted") == 1


async def test_twenty_concurrent_completions_have_one_winner(sessions: Sessions, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("race")
    engine = PersistentExecutionEngine(registry(), sessions, tenant_id=tenant)
    instance = await engine.start_workflow("approval", {"n": 1})
    # twenty engines, as if twenty API processes each got the request
    racers = [PersistentExecutionEngine(registry(), sessions, tenant_id=tenant) for _ in range(20)]
    results = await asyncio.gather(
        *(
            r.complete_human_task(instance.id, "approve", f"user{i}", {"approved": True, "by": i})
            for i, r in enumerate(racers)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 19
    # each loser is told why: the task is no longer open (the instance went on and completed)
    assert all(isinstance(e, InvalidTransitionError) and "cannot complete task" in e.detail for e in losers), losers
    final = await engine.get_instance(instance.id)
    assert final.status is WorkflowStatus.COMPLETED
    assert final.data["by"] == winners[0].data["by"]
    assert [r.step_name for r in final.step_history] == ["s1", "approve", "s3"]
    assert await count(sessions, tenant, StepExecutionModel, instance_id=instance.id) == 3
    assert await count(sessions, tenant, HumanTaskModel, status="completed") == 1
    assert await count(sessions, tenant, OutboxEventModel, event_type="HumanTaskCompleted") == 1
    assert await count(sessions, tenant, OutboxEventModel, event_type="WorkflowCompleted") == 1


async def test_a_stale_version_commits_nothing(sessions: Sessions, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("fence")
    engine = PersistentExecutionEngine(registry(), sessions, tenant_id=tenant, commit_each_change=True)
    instance = await engine.start_workflow("approval", {})
    store = engine.persistence
    zombie = await store.load(instance.id)  # a worker that loaded, then paused
    await engine.complete_human_task(instance.id, "approve", "bob", {"approved": True})  # someone else moved on

    kernel = engine.registry.kernel(zombie.definition)
    event = TaskCompleted("approve", "zombie", {"approved": False}, engine.clock.now())
    transition = kernel.apply(zombie.state, event)
    before = (await count(sessions, tenant, StepExecutionModel), await count(sessions, tenant, OutboxEventModel))
    with pytest.raises(ConcurrencyError):
        await store.save(zombie, transition, event, zombie.version)
    assert zombie.status is WorkflowStatus.WAITING  # the stale object is left as it was
    after = (await count(sessions, tenant, StepExecutionModel), await count(sessions, tenant, OutboxEventModel))
    assert after == before
    stored = await store.load(instance.id)
    assert stored.status is WorkflowStatus.COMPLETED
    assert stored.data["approved"] is True
    async with sessions() as session:
        bind_tenant(session, tenant)
        (task,) = (await session.execute(select(HumanTaskModel))).scalars()
        assert task.completed_by == "bob"


async def test_cancel_closes_the_task_and_failure_is_recorded(sessions: Sessions, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("ops")
    bus = InMemoryEventBus()
    engine = PersistentExecutionEngine(registry(), sessions, bus, tenant_id=tenant)
    waiting = await engine.start_workflow("approval", {})
    canceled = await engine.cancel_workflow(waiting.id, "no longer needed")
    assert canceled.status is WorkflowStatus.CANCELED
    (task,) = await engine.persistence.list_tasks(instance_id=waiting.id)
    assert task.status is TaskStatus.CANCELED
    with pytest.raises(InvalidTransitionError, match="it is canceled"):
        await engine.complete_human_task(waiting.id, "approve", "bob", {})

    failed = await engine.start_workflow("flaky", {"fail": True})
    assert failed.status is WorkflowStatus.FAILED
    async with sessions() as session:
        bind_tenant(session, tenant)
        row = await session.get(WorkflowInstanceModel, failed.id)
        assert row is not None
        assert (row.status, row.error) == ("failed", failed.error)
    instance = await PersistentExecutionEngine(registry(), sessions, tenant_id=tenant).get_instance(failed.id)
    assert instance.failed_step == "flaky"
    types = [e.type for e in bus.events]
    assert types.count("WorkflowCanceled") == 1
    assert types.count("WorkflowFailed") == 1
    assert await count(sessions, tenant, OutboxEventModel, event_type="WorkflowFailed") == 1


async def test_retry_runs_the_failed_step_again(sessions: Sessions, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("retry")
    engine = PersistentExecutionEngine(registry(), sessions, tenant_id=tenant)
    failed = await engine.start_workflow("flaky", {"fail": True})
    assert failed.status is WorkflowStatus.FAILED
    # the cause goes away (the step reads 'fail' from the data the retry keeps, so patch the step)
    engine.registry.get_definition("flaky").steps["flaky"].execute = _succeed  # type: ignore[method-assign]
    done = await engine.retry(failed.id)
    assert done.status is WorkflowStatus.COMPLETED
    history = [(r.step_name, r.status) for r in (await engine.get_instance(failed.id)).step_history]
    assert history == [
        ("s1", StepStatus.SUCCEEDED),
        ("flaky", StepStatus.FAILED),
        ("flaky", StepStatus.SUCCEEDED),
        ("s3", StepStatus.SUCCEEDED),
    ]


async def _succeed(context: object) -> None:
    return None


async def test_many_concurrent_instances_all_complete(sessions: Sessions, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("load")
    engine = PersistentExecutionEngine(registry(), sessions, tenant_id=tenant)

    async def one(i: int) -> bool:
        instance = await engine.start_workflow("approval", {"n": i})
        done = await engine.complete_human_task(instance.id, "approve", "u", {"approved": True})
        return done.status is WorkflowStatus.COMPLETED and done.data["n"] == i

    assert all(await asyncio.gather(*(one(i) for i in range(60))))
    assert not engine.persistence._tenants  # an engine of one tenant keeps nothing per instance it touched
    assert await count(sessions, tenant, WorkflowInstanceModel, status="completed") == 60
    assert await count(sessions, tenant, StepExecutionModel) == 180
    assert await count(sessions, tenant, OutboxEventModel, event_type="WorkflowCompleted") == 60


async def test_events_wait_for_the_relay_only_when_a_subscription_may_want_them(
    sessions: Sessions, new_tenant: NewTenant
) -> None:
    """A tenant without an active webhook subscription has its events written as published: the
    relay has nothing to find or mark. With one, they are written unpublished, for the relay."""
    quiet, subscribed, lapsed = await new_tenant("quiet"), await new_tenant("subscribed"), await new_tenant("lapsed")
    for tenant, active in ((subscribed, True), (lapsed, False)):
        async with sessions() as session, session.begin():
            bind_tenant(session, tenant)
            session.add(
                WebhookSubscriptionModel(tenant_id=tenant, url="https://example.com/h", secret="s" * 32, active=active)
            )
    for tenant in (quiet, subscribed, lapsed):
        await PersistentExecutionEngine(registry(), sessions, tenant_id=tenant).start_workflow("machines", {})
    unpublished = {}
    for tenant in (quiet, subscribed, lapsed):
        async with sessions() as session:
            bind_tenant(session, tenant)
            rows = await session.execute(
                select(OutboxEventModel.published_at).where(OutboxEventModel.tenant_id == tenant)
            )
            stamps = rows.scalars().all()
        assert len(stamps) == 5  # started, three steps executed, completed
        unpublished[tenant] = sum(stamp is None for stamp in stamps)
    assert unpublished == {quiet: 0, subscribed: 5, lapsed: 0}


async def test_no_tenant_no_start(sessions: Sessions, new_tenant: NewTenant) -> None:
    engine = PersistentExecutionEngine(registry(), sessions)
    with pytest.raises(TenantNotBoundError):
        await engine.start_workflow("machines", {})
    with pytest.raises(UnknownTenantError):
        await engine.start_workflow("machines", {}, tenant_id=str(uuid.uuid4()))
    tenant = await new_tenant("known")
    with pytest.raises(InstanceNotFoundError):
        await PersistentExecutionEngine(registry(), sessions, tenant_id=tenant).get_instance(uuid.uuid4())


async def test_one_session_like_the_seeds(sessions: Sessions, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("seed")
    async with sessions() as session:
        engine = PersistentExecutionEngine(registry=registry(), session=session)
        instance = await engine.start_workflow("approval", initial_data={"key": "value"}, tenant_id=str(tenant))
        done = await engine.complete_human_task(instance.id, "approve", "u", {"approved": True})
        assert done.status is WorkflowStatus.COMPLETED
    assert await count(sessions, tenant, WorkflowInstanceModel, status="completed") == 1


class Returns(BaseMachineStep):
    """Returns the value it was made with (a step result of any JSON shape)."""

    def __init__(self, name: str, value: Any) -> None:
        super().__init__(name)
        self.value = value

    async def execute(self, context: WorkflowContext) -> Any:
        return self.value


RESULTS: dict[str, Any] = {
    "text": "a string, not JSON text: {}",
    "number": 2.5,
    "items": [1, "two", None, {"three": [3]}],
    "nested": {"a": {"b": [True, False]}, "é": "ü"},
    "nothing": None,
}


async def test_json_values_come_back_as_they_went_in(sessions: Sessions, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("acme")
    reg = registry()
    steps: list[Any] = [Returns(name, value) for name, value in RESULTS.items()]
    reg.register_definition(linear("shapes", [*steps[:2], Approve(), *steps[2:]]))
    started = await PersistentExecutionEngine(reg, sessions, tenant_id=tenant).start_workflow(
        "shapes", {"order": {"lines": [1, 2]}, "note": "x"}
    )
    form = {"approved": True, "comment": "ok", "extra": {"list": [1, None]}}
    fresh = PersistentExecutionEngine(reg, sessions, tenant_id=tenant)  # reads everything back from the database
    done = await fresh.complete_human_task(started.id, "approve", "bob", form)
    assert done.status is WorkflowStatus.COMPLETED
    again = await PersistentExecutionEngine(reg, sessions, tenant_id=tenant).get_instance(started.id)
    results = {r.step_name: r.result for r in again.step_history}
    assert {name: results[name] for name in RESULTS} == RESULTS
    assert again.data == {"order": {"lines": [1, 2]}, "note": "x", **form}
    (task,) = await fresh.persistence.list_tasks(instance_id=started.id)
    assert task.form_schema == Approve.form_schema
    async with sessions() as session:
        bind_tenant(session, tenant)
        rows = await session.execute(select(OutboxEventModel).where(OutboxEventModel.instance_id == started.id))
        outbox = rows.scalars().all()
        step_ids = (await session.execute(select(StepExecutionModel.id))).scalars().all()
    # started and completed, one StepExecuted per machine step, and the task: created, completed, executed
    assert len({row.id for row in outbox}) == len(outbox) == 2 + len(RESULTS) + 3
    assert len(set(step_ids)) == len(step_ids) == len(RESULTS) + 1
    (started_event,) = [row.payload for row in outbox if row.event_type == "WorkflowStarted"]
    assert started_event["initial_data"] == {"order": {"lines": [1, 2]}, "note": "x"}
    assert started_event["instance_id"] == str(started.id)


async def test_one_transaction_for_a_read_and_an_engine_call(sessions: Sessions, new_tenant: NewTenant) -> None:
    """engine.transaction(): the caller's read, the load and the write commit together; events
    wait for that commit; a block that raises after the call writes nothing and emits nothing."""
    tenant = await new_tenant("shared")
    bus = InMemoryEventBus()
    engine = PersistentExecutionEngine(registry(), sessions, bus, tenant_id=tenant)
    instance = await engine.start_workflow("approval", {})
    seen = bus.events
    seen.clear()

    class Refused(Exception):
        pass

    async def complete_then_refuse() -> None:
        async with engine.transaction(tenant) as session:
            (task,) = (await session.execute(select(HumanTaskModel))).scalars()
            done = await engine.complete_human_task(instance.id, task.step_name, "bob", {"approved": True})
            assert done.status is WorkflowStatus.COMPLETED  # as the engine left it, not yet committed
            assert seen == []
            raise Refused

    with pytest.raises(Refused):
        await complete_then_refuse()
    assert seen == []
    stored = await PersistentExecutionEngine(registry(), sessions, tenant_id=tenant).get_instance(instance.id)
    assert (stored.status, stored.version) == (WorkflowStatus.WAITING, instance.version)
    assert await count(sessions, tenant, HumanTaskModel, status="pending") == 1

    async with engine.transaction(tenant) as session:
        (task,) = (await session.execute(select(HumanTaskModel))).scalars()
        await engine.complete_human_task(instance.id, task.step_name, "bob", {"approved": True})
        assert seen == []
    assert {"WorkflowCompleted", "HumanTaskCompleted"} <= {event.type for event in seen}
    stored = await PersistentExecutionEngine(registry(), sessions, tenant_id=tenant).get_instance(instance.id)
    assert stored.status is WorkflowStatus.COMPLETED
    assert await count(sessions, tenant, HumanTaskModel, status="completed") == 1

    other = await new_tenant("other")

    async def start_for_other() -> None:  # a call for another tenant cannot join the transaction
        async with engine.transaction(tenant):
            await engine.start_workflow("approval", {}, tenant_id=str(other))

    with pytest.raises(TenantMismatchError):
        await start_for_other()


async def test_a_nested_engine_transaction_joins_the_outer_one(sessions: Sessions, new_tenant: NewTenant) -> None:
    """An inner block (of this engine or another of the tenant's) is part of the outer
    transaction: its events wait for the outer commit, and the outer block raising undoes it
    (including the definition row the first start stores: not remembered once rolled back)."""
    tenant = await new_tenant("nested")
    outer_bus, inner_bus = InMemoryEventBus(), InMemoryEventBus()
    outer = PersistentExecutionEngine(registry(), sessions, outer_bus, tenant_id=tenant)
    inner = PersistentExecutionEngine(registry(), sessions, inner_bus, tenant_id=tenant)

    class Refused(Exception):
        pass

    async def start_then_refuse(engine: PersistentExecutionEngine) -> None:
        async with outer.transaction(tenant):
            async with engine.transaction(tenant):
                await engine.start_workflow("approval", {})
            assert outer_bus.events == inner_bus.events == []  # the inner block has not committed
            raise Refused

    for engine in (outer, inner):
        with pytest.raises(Refused):
            await start_then_refuse(engine)
        assert outer_bus.events == inner_bus.events == []
        assert await count(sessions, tenant, WorkflowInstanceModel) == 0

    async with outer.transaction(tenant):
        async with inner.transaction(tenant):
            started = await inner.start_workflow("approval", {})
        assert inner_bus.events == []
    assert [e.type for e in inner_bus.events if e.instance_id == started.id][:1] == ["WorkflowStarted"]
    assert outer_bus.events == []  # each engine's events go to its own bus
    assert await count(sessions, tenant, WorkflowInstanceModel) == 1


class _FailsOnce(BaseMachineStep):
    """Fails on its first attempt per ``context['key']``."""

    name = "once"
    failed: ClassVar[set[str]] = set()

    async def execute(self, context: WorkflowContext) -> None:
        key = str(context.get("key"))
        if key not in self.failed:
            self.failed.add(key)
            raise RuntimeError("the first attempt fails")
        context.set("once", True)


async def test_a_retry_timer_set_inside_engine_transaction_runs_on_its_own(
    sessions: Sessions, new_tenant: NewTenant
) -> None:
    """Work scheduled inside the block (a step's retry, 100 ms on) outlives the block: it must
    not use the block's transaction, which has ended (it did, and held a connection forever)."""
    tenant = await new_tenant("retry")
    definitions = registry()
    policy = RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=100))
    definitions.register_definition(linear("retry", [SetFlag("s1"), _FailsOnce(retry_policy=policy), SetFlag("s3")]))
    engine = PersistentExecutionEngine(definitions, sessions, tenant_id=tenant)
    async with engine.transaction(tenant):
        started = await engine.start_workflow("retry", {"key": str(uuid.uuid4())})
    deadline = asyncio.get_running_loop().time() + 10
    while (stored := await engine.get_instance(started.id)).status is not WorkflowStatus.COMPLETED:
        assert asyncio.get_running_loop().time() < deadline, stored.status
        await asyncio.sleep(0.05)
    assert stored.data["once"] is True


async def test_task_deadline_timers_follow_the_task(sessions: Sessions, new_tenant: NewTenant) -> None:
    """Reminder and escalation timers, written in the change's own statement: added when a task
    opens, replaced when it closes and opens again in one change, gone when it closes."""

    class Review(BaseHumanStep):
        name = "review"
        title = "Review"
        candidate_groups = ("managers",)
        reminder = timedelta(hours=1)
        escalation = Escalation(timedelta(hours=2), reassign_to=("bosses",))

    definitions = registry()
    definitions.register_definition(
        WorkflowDefinition(
            name="loop",
            version="1.0.0",
            steps={"s1": SetFlag("s1"), "review": Review(), "s2": SetFlag("s2"), "end": SetFlag("end")},
            edges=[
                Edge("s1", "review"),
                Edge("review", "s2"),
                Edge("s2", "review", lambda c: not c.get("done")),
                Edge("s2", "end", default=True),
            ],
            initial_step="s1",
            terminal_steps={"end"},
        )
    )
    tenant = await new_tenant("deadlines")
    engine = PersistentExecutionEngine(definitions, sessions, tenant_id=tenant)

    async def timers() -> list[tuple[str, Any]]:
        async with sessions() as session:
            bind_tenant(session, tenant)
            return sorted((t.kind, t.fire_at) for t in (await session.execute(select(TimerModel))).scalars())

    instance = await engine.start_workflow("loop", {})
    opened = await timers()
    assert [kind for kind, _ in opened] == ["escalation", "reminder"]
    await asyncio.sleep(0.01)
    instance = await engine.complete_human_task(instance.id, "review", "bob", {})  # closes, opens again
    reopened = await timers()
    assert [kind for kind, _ in reopened] == ["escalation", "reminder"] and reopened != opened
    instance = await engine.complete_human_task(instance.id, "review", "bob", {"done": True})
    assert instance.status is WorkflowStatus.COMPLETED
    assert await timers() == []


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_an_instance_moves_on_while_its_tenant_row_is_locked(
    sessions: Sessions, new_tenant: NewTenant, database: Database
) -> None:
    """An instance's steps, events and work reference the instance, not the tenants row: writing
    them locks nothing there (else every writing transaction of a tenant would share one lock)."""
    tenant = await new_tenant("busy")
    engine = PersistentExecutionEngine(registry(), sessions, tenant_id=tenant)
    instance = await engine.start_workflow("approval", {})
    url = make_url(database.admin_url).set(database=make_url(database.owner_url).database)
    admin = create_async_engine(url, poolclass=NullPool)
    try:
        async with admin.begin() as other:  # a lock that every foreign-key check on the row waits for
            await other.execute(text("SELECT 1 FROM tenants WHERE id = :t FOR UPDATE"), {"t": tenant})
            done = await asyncio.wait_for(
                engine.complete_human_task(instance.id, "approve", "ann", {"approved": True}), 10
            )
        assert done.status is WorkflowStatus.COMPLETED
        assert await count(sessions, tenant, StepExecutionModel) == 3
    finally:
        await admin.dispose()
