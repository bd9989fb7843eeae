"""Reliability scenarios 3 and 9 on the worker's runner (real PostgreSQL, RLS on).

3. Every job delivered twice at once, plus a late duplicate: the history is that of a clean run.
9. A poison step in tenant A while tenant B runs: A's instance fails cleanly, B's complete, and the
   runner never raises.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from flowdeck_engine import WorkflowStatus
from flowdeck_engine.documents import load_definition
from flowdeck_runtime.dispatch import StoredWaits
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import StepExecutionModel, TenantModel, session_factory
from flowdeck_worker import InstanceRunner
from tests.e2e import documents
from tests.integration.worker.test_worker_pieces import RecordingQueue


async def _tenant(tenants: Tenants, *docs: dict[str, Any]) -> uuid.UUID:
    tenant = uuid.uuid4()
    async with tenants.transaction(tenant) as session:
        session.add(TenantModel(id=tenant, slug=f"t-{tenant.hex[:8]}", name="t"))
    for doc in docs:
        tenants.engine(tenant).registry.register_definition(load_definition(doc))
    return tenant


async def _history(tenants: Tenants, tenant: uuid.UUID, instance_id: uuid.UUID) -> list[tuple[int, str, str, int]]:
    s = StepExecutionModel
    async with tenants.transaction(tenant) as session:
        rows = await session.execute(
            select(s.seq, s.step_name, s.status, s.attempt)
            .where(s.tenant_id == tenant, s.instance_id == instance_id)
            .order_by(s.seq)
        )
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def test_jobs_delivered_twice_and_late_leave_the_history_of_a_clean_run(pg_system_engine: AsyncEngine) -> None:
    tenants = Tenants(session_factory(pg_system_engine), step_queue=RecordingQueue(), dispatcher=StoredWaits())
    tenant = await _tenant(tenants, documents.machines(count=3), documents.parallel())
    runner = InstanceRunner(tenants, lease_seconds=10, heartbeat_seconds=5)
    engine = tenants.engine(tenant)
    instances = [await engine.start_workflow("three-machines" if i % 2 else "fan-out") for i in range(20)]
    outcomes = await asyncio.gather(*(runner.run(tenant, i.id) for i in instances for _ in range(2)))
    assert set(outcomes) <= {"done", "idle"}
    assert [await runner.run(tenant, i.id) for i in instances] == ["idle"] * len(instances)  # late duplicates

    clean_linear = [(0, "m1", "succeeded", 1), (1, "m2", "succeeded", 1), (2, "m3", "succeeded", 1)]
    for instance in instances:
        stored = await engine.get_instance(instance.id)
        assert stored.status is WorkflowStatus.COMPLETED
        history = await _history(tenants, tenant, instance.id)
        if instance.workflow_name == "three-machines":
            assert history == clean_linear
        else:
            assert [seq for seq, *_ in history] == list(range(6))
            assert sorted(name for _, name, _, _ in history) == ["a", "b", "c", "end", "join", "start"]
            assert {(status, attempt) for _, _, status, attempt in history} == {("succeeded", 1)}


POISON = {
    "format": "flowdeck.workflow/v1",
    "name": "poison",
    "version": "1.0.0",
    "initial_step": "bad",
    "terminal_steps": ["never"],
    "steps": [
        {"name": "bad", "kind": "machine", "action": {"type": "set", "values": {"x": "context['missing']['deep']"}}},
        {"name": "never", "kind": "machine", "action": {"type": "set", "values": {"never": "True"}}},
    ],
    "edges": [{"source": "bad", "target": "never"}],
}


async def test_a_poison_step_in_one_tenant_fails_cleanly_while_another_runs(pg_system_engine: AsyncEngine) -> None:
    tenants = Tenants(session_factory(pg_system_engine), step_queue=RecordingQueue(), dispatcher=StoredWaits())
    a = await _tenant(tenants, POISON)
    b = await _tenant(tenants, documents.machines(count=3))
    runner = InstanceRunner(tenants, lease_seconds=10, heartbeat_seconds=5)
    poisoned = [await tenants.engine(a).start_workflow("poison") for _ in range(5)]
    healthy = [await tenants.engine(b).start_workflow("three-machines") for _ in range(20)]
    jobs = [runner.run(a, i.id) for i in poisoned] + [runner.run(b, i.id) for i in healthy]
    assert set(await asyncio.gather(*jobs)) == {"done"}
    for instance in poisoned:
        failed = await tenants.engine(a).get_instance(instance.id)
        assert failed.status is WorkflowStatus.FAILED and failed.state.failed_step == "bad"
    for instance in healthy:
        assert (await tenants.engine(b).get_instance(instance.id)).status is WorkflowStatus.COMPLETED
