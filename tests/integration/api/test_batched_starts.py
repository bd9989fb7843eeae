"""Starts with a step queue (production: machine steps run on workers) share transactions.

Concurrent starts of a tenant are one transaction and one Redis pipeline; each is answered only
once its instance committed and its job is in Redis; a start refused before it wrote anything
(no such workflow, the running cap) fails alone while the others of its batch go ahead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from flowdeck_api.app import create_app
from flowdeck_api.domain.instances.starts import StartRequest, Starts
from flowdeck_api.errors import ApiError
from flowdeck_engine import WorkflowInstance
from flowdeck_runtime.queue import instance_job_key
from flowdeck_runtime.settings import LimitSettings, RedisSettings, WorkSettings
from tests.e2e import documents
from tests.integration.api.conftest import Api, make_settings, served
from tests.integration.conftest import Database

MACHINES = documents.machines()


def queued_api(database: Database, tmp_path: Path, redis_url: str, **limits: Any) -> tuple[Any, Any]:
    """An app in production mode with Redis: a SAQ step queue, so starts go through the batches."""
    settings = make_settings(database, tmp_path / "dev-secret")
    settings = replace(
        settings,
        redis=RedisSettings(url=redis_url),
        work=replace(WorkSettings(), queue_name=f"batched-{uuid.uuid4().hex[:8]}"),
        limits=replace(LimitSettings(), starts_per_minute=100_000, max_starts_in_flight=1_000, **limits),
    )
    return settings, create_app(settings)


@pytest.fixture
async def queued(truncated: Database, tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    settings, app = queued_api(truncated, tmp_path, redis_url)
    assert app.state.starts is not None  # the batched path
    async with served(app) as client:
        yield Api(client, settings, truncated, app=app)


async def tenant_with_machines(api: Api) -> tuple[uuid.UUID, dict[str, str]]:
    tenant = await api.tenant()
    admin = api.token(tenant, "admin", "admin")
    upload = await api.client.post("/v1/definitions", json=MACHINES, headers=admin)
    assert upload.status_code == 201, upload.text
    return tenant, admin


async def instance_rows(api: Api, tenant: uuid.UUID) -> list[Any]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(api.database.app_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant)})
            result = await conn.execute(text("SELECT id, status, created_at FROM workflow_instances"))
            return list(result.all())
    finally:
        await engine.dispose()


async def test_concurrent_starts_commit_and_enqueue_together_and_refusals_fail_alone(
    queued: Api, redis_url: str
) -> None:
    tenant, admin = await tenant_with_machines(queued)
    good = [queued.client.post("/v1/instances", json={"workflow": "three-machines"}, headers=admin) for _ in range(40)]
    missing = [queued.client.post("/v1/instances", json={"workflow": "no-such"}, headers=admin) for _ in range(5)]
    old = [
        queued.client.post("/v1/instances", json={"workflow": "three-machines", "version": "9.9.9"}, headers=admin)
        for _ in range(3)
    ]
    answers = await asyncio.gather(*good, *missing, *old)

    started = answers[:40]
    assert [a.status_code for a in started] == [201] * 40, [a.text for a in started if a.status_code != 201][:2]
    for refused in answers[40:]:
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "workflow_not_found"

    rows = await instance_rows(queued, tenant)
    ids = {str(a.json()["id"]) for a in started}
    assert {str(r.id) for r in rows} == ids  # every answered start committed, nothing else did
    assert len({r.created_at for r in rows}) < len(rows)  # starts shared transactions (one time per batch)

    redis = Redis.from_url(redis_url)
    try:
        name = queued.settings.work.queue_name
        prefix = f"saq:job:{name}:"
        jobs = [job.decode().removeprefix(prefix) for job in await redis.lrange(f"saq:{name}:queued", 0, -1)]
        # one job per started instance, keyed instance:seq, all in Redis before the answers came
        assert sorted(key.split(":")[0] for key in jobs) == sorted(ids)
        assert all(key == instance_job_key(*key.split(":")) for key in jobs)
    finally:
        await redis.aclose()


async def test_the_running_cap_refuses_every_start_past_it(truncated: Database, tmp_path: Path, redis_url: str) -> None:
    settings, app = queued_api(truncated, tmp_path, redis_url, max_running_instances=5)
    async with served(app) as client:
        api = Api(client, settings, truncated, app=app)
        tenant, admin = await tenant_with_machines(api)
        for _ in range(5):
            started = await client.post("/v1/instances", json={"workflow": "three-machines"}, headers=admin)
            assert started.status_code == 201, started.text
        answers = await asyncio.gather(
            *(client.post("/v1/instances", json={"workflow": "three-machines"}, headers=admin) for _ in range(7))
        )
        for refused in answers:
            assert refused.status_code == 429, refused.text
            assert refused.json()["code"] == "too_many_running"
            assert refused.headers["retry-after"] == "10"
        assert len(await instance_rows(api, tenant)) == 5


async def test_an_idempotent_start_returns_its_first_answer_through_the_batches(queued: Api) -> None:
    _, admin = await tenant_with_machines(queued)
    headers = {**admin, "Idempotency-Key": "batched-1"}
    first = await queued.client.post("/v1/instances", json={"workflow": "three-machines"}, headers=headers)
    again = await queued.client.post("/v1/instances", json={"workflow": "three-machines"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = await queued.client.post(
        "/v1/instances", json={"workflow": "three-machines", "input": {"x": 1}}, headers=headers
    )
    assert other.status_code == 422


async def test_one_batch_counts_its_own_starts_against_the_cap_and_refuses_unknown_workflows(
    queued: Api,
) -> None:
    tenant, _ = await tenant_with_machines(queued)
    assert queued.app is not None
    starts = Starts(queued.app.state.tenants, max_running=3)
    requests = [StartRequest("three-machines", None, {"n": n}, "alice", None) for n in range(5)]
    requests.insert(2, StartRequest("no-such", None, {}, "alice", None))
    # submitted together, so they are one batch: one transaction, one running count
    results = await asyncio.gather(*(starts.start(tenant, r) for r in requests), return_exceptions=True)

    refusals = [(r.status, r.code) for r in results if isinstance(r, ApiError)]
    assert refusals == [(404, "workflow_not_found"), (429, "too_many_running"), (429, "too_many_running")]
    instances = [r for r in results if isinstance(r, WorkflowInstance)]
    assert [i.context.get("n") for i in instances] == [0, 1, 2]
    rows = await instance_rows(queued, tenant)
    assert {r.id for r in rows} == {i.id for i in instances}
    assert len({r.created_at for r in rows}) == 1  # one transaction
