"""The seeds' repositories, in a savepoint-isolated session on PostgreSQL as the app role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from flowdeck_engine import WorkflowStatus
from flowdeck_store import (
    HumanTaskModel,
    HumanTaskRepository,
    StepExecutionModel,
    StepExecutionRepository,
    TaskCandidateModel,
    TenantModel,
    WorkflowDefinitionModel,
    WorkflowDefinitionRepository,
    WorkflowInstanceModel,
    WorkflowInstanceRepository,
    bind_tenant,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def _seed(session: AsyncSession) -> tuple[uuid.UUID, uuid.UUID]:
    tenant = bind_tenant(session, uuid.uuid4())
    session.add(TenantModel(id=tenant, slug=f"r-{tenant.hex[:8]}", name="r"))
    await session.flush()
    defs = [
        WorkflowDefinitionModel(tenant_id=tenant, name="expense", version=v, is_active=active, definition_json={})
        for v, active in (("1.0.0", True), ("1.10.0", True), ("2.0.0", False))
    ]
    session.add_all(defs)
    await session.flush()
    instances = [
        WorkflowInstanceModel(
            tenant_id=tenant,
            definition_id=defs[0].id,
            workflow_name="expense",
            workflow_version="1.0.0",
            status=status,
            started_at=NOW + timedelta(minutes=i),
            created_by=user,
            kernel_state={},
        )
        for i, (status, user) in enumerate((("running", "ann"), ("waiting", "ann"), ("completed", "bob")))
    ]
    session.add_all(instances)
    await session.flush()
    first = instances[0].id
    session.add_all(
        [
            StepExecutionModel(
                tenant_id=tenant,
                instance_id=first,
                seq=i,
                step_name=name,
                step_type="machine",
                status=status,
                started_at=NOW,
                attempt=i + 1,
            )
            for i, (name, status) in enumerate((("s1", "failed"), ("s1", "succeeded"), ("s2", "succeeded")))
        ]
    )
    session.add_all(
        [
            HumanTaskModel(
                tenant_id=tenant,
                instance_id=first,
                workflow_name="expense",
                step_name="approve",
                title="mine",
                assignee_id="ann",
                due_at=NOW - timedelta(days=1),
            ),
            HumanTaskModel(
                tenant_id=tenant,
                instance_id=first,
                workflow_name="expense",
                step_name="review",
                title="managers",
                assignee_group="managers",
                candidate_groups=["managers", "leads"],
            ),
            HumanTaskModel(
                tenant_id=tenant,
                instance_id=first,
                workflow_name="expense",
                step_name="other",
                title="bob's",
                assignee_id="bob",
            ),
        ]
    )
    await session.flush()
    return tenant, first


async def test_definition_repository(savepoint_session: AsyncSession) -> None:
    await _seed(savepoint_session)
    repo = WorkflowDefinitionRepository(session=savepoint_session)
    latest = await repo.get_latest_version("expense")
    assert latest is not None
    assert latest.version == "1.10.0"  # semantic, not lexical; 2.0.0 is inactive
    assert (await repo.get_by_name("expense", "2.0.0")) is None
    inactive = await repo.get_by_name("expense", "2.0.0", active_only=False)
    assert inactive is not None
    assert [d.version for d in await repo.list_active()] == ["1.0.0", "1.10.0"]


async def test_instance_repository(savepoint_session: AsyncSession) -> None:
    tenant, first = await _seed(savepoint_session)
    repo = WorkflowInstanceRepository(session=savepoint_session)
    found, total = await repo.find_by_workflow("expense", limit=2)
    assert (total, len(found)) == (3, 2)
    assert [i.status for i in found] == ["completed", "waiting"]  # newest first
    assert (await repo.find_by_workflow("expense", WorkflowStatus.RUNNING))[1] == 1
    assert {i.status for i in await repo.find_by_user("ann")} == {"running", "waiting"}
    assert (await repo.find_by_tenant(tenant))[1] == 3
    assert (await repo.find_by_tenant(uuid.uuid4()))[1] == 0
    assert [i.status for i in await repo.find_running()] == ["running", "waiting"]
    updated = await repo.update_status(first, WorkflowStatus.FAILED, error="boom")
    assert updated is not None
    assert (updated.status, updated.error, updated.version) == ("failed", "boom", 2)
    assert await repo.update_status(uuid.uuid4(), WorkflowStatus.FAILED) is None


async def test_step_repository(savepoint_session: AsyncSession) -> None:
    _, first = await _seed(savepoint_session)
    repo = StepExecutionRepository(session=savepoint_session)
    assert [(s.step_name, s.seq) for s in await repo.find_by_instance(first)] == [("s1", 0), ("s1", 1), ("s2", 2)]
    latest = await repo.find_by_step_name(first, "s1")
    assert latest is not None
    assert (latest.status, latest.attempt) == ("succeeded", 2)
    assert [s.attempt for s in await repo.find_failed()] == [1]
    assert await repo.find_failed(uuid.uuid4()) == []


async def test_task_repository(savepoint_session: AsyncSession) -> None:
    _, first = await _seed(savepoint_session)
    repo = HumanTaskRepository(session=savepoint_session)
    assert {t.title for t in await repo.find_pending()} == {"mine", "managers", "bob's"}
    assert {t.title for t in await repo.find_pending(assignee_id="ann")} == {"mine"}
    assert {t.title for t in await repo.find_pending(assignee_group="leads")} == {"managers"}
    assert {t.title for t in await repo.find_pending(assignee_group="nobody")} == set()
    assert [t.title for t in await repo.find_overdue(NOW)] == ["mine"]
    assert len(await repo.find_by_instance(first)) == 3
    mine = (await repo.find_pending(assignee_id="ann"))[0]
    done = await repo.complete_task(mine.id, "ann")
    assert done is not None
    assert (done.status, done.completed_by) == ("completed", "ann")
    assert done.completed_at is not None
    assert await repo.complete_task(mine.id, "eve") is None  # a second completion is refused
    bobs = (await repo.find_pending(assignee_id="bob"))[0]
    canceled = await repo.cancel_task(bobs.id)
    assert canceled is not None
    assert canceled.status == "canceled"
    assert {t.title for t in await repo.find_pending()} == {"managers"}
    # A task added through the repository is in the inbox index too (else nobody could find it).
    added = await repo.add(
        HumanTaskModel(
            tenant_id=mine.tenant_id,
            instance_id=first,
            workflow_name="expense",
            step_name="review",
            title="added",
            candidate_groups=["leads", "auditors"],
        )
    )
    routed = await savepoint_session.execute(
        select(TaskCandidateModel.principal, TaskCandidateModel.status).where(TaskCandidateModel.task_id == added.id)
    )
    assert sorted(routed.all()) == [("g:auditors", "pending"), ("g:leads", "pending")]
