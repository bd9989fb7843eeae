"""The embedded mode's worker and scheduler (in one process, on the in-process queue), on SQLite and
PostgreSQL: the same runner and scheduler as the production processes, the same recoveries."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy.pool import NullPool

from flowdeck_engine import WorkflowStatus
from flowdeck_engine.documents import load_definition
from flowdeck_runtime.dispatch import StoredWaits
from flowdeck_runtime.inprocess import InProcessQueue
from flowdeck_runtime.settings import load_settings
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import PendingWorkModel, TenantModel, TimerModel, create_engine, session_factory
from flowdeck_worker.embedded import in_process
from flowdeck_worker.services import Services
from tests.e2e import documents
from tests.integration.worker.test_worker_pieces import _count

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


async def _until_finished(tenants: Tenants, tenant: uuid.UUID, iid: uuid.UUID, seconds: float = 20) -> WorkflowStatus:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = (await tenants.engine(tenant).get_instance(iid)).status
        if status is not WorkflowStatus.RUNNING:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"instance {iid} did not finish")


async def test_a_lost_job_is_resent_and_a_timer_fires_in_process(system_url: str) -> None:
    engine = create_engine(system_url, **({} if system_url.startswith("sqlite") else {"poolclass": NullPool}))
    try:
        await _lost_job_and_timer(system_url, engine)
    finally:
        await engine.dispose()


async def _lost_job_and_timer(store_url: str, engine: AsyncEngine) -> None:
    settings = load_settings()
    settings = replace(
        settings,
        database=replace(settings.database, url=store_url),
        work=replace(settings.work, poll_seconds=0.1, quiet_seconds=1),
    )
    queue = InProcessQueue()
    tenants = Tenants(session_factory(engine), step_queue=queue, dispatcher=StoredWaits())
    tenant = uuid.uuid4()
    async with tenants.transaction(tenant) as session:
        session.add(TenantModel(id=tenant, slug=f"embedded-{tenant.hex[:8]}", name="embedded"))
    for doc in (documents.machines(count=3), documents.timer(0.5)):
        tenants.engine(tenant).registry.register_definition(load_definition(doc))

    lost = await tenants.engine(tenant).start_workflow("three-machines", tenant_id=str(tenant))
    job = await queue.get()  # the job is lost: nobody runs it
    queue.done(job)
    assert job.instance_id == lost.id
    timed = await tenants.engine(tenant).start_workflow("timed", tenant_id=str(tenant))

    async with in_process(Services(settings, engine, tenants, queue)) as scheduler:
        assert await _until_finished(tenants, tenant, lost.id) is WorkflowStatus.COMPLETED
        assert await _until_finished(tenants, tenant, timed.id) is WorkflowStatus.COMPLETED
    assert scheduler.handled >= 2  # the lost work re-sent, the timer fired
    assert await _count(tenants, tenant, PendingWorkModel) == 0
    assert await _count(tenants, tenant, TimerModel) == 0
