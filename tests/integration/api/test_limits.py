"""Limits: the per-tenant start rate (shared through Redis), overload shedding, caps, page sizes."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_api.app import create_app
from flowdeck_api.ratelimit import KEY_PREFIX, LocalRateLimiter, Rate, RedisRateLimiter
from flowdeck_runtime.settings import LimitSettings, RedisSettings
from tests.integration.api.conftest import EXPENSE, YAML, Api, make_settings
from tests.integration.conftest import Database
from tests.integration.servers import free_port

SMALL = {"workflow": "expense-approval", "input": {"amount": 5}}  # approved at once: completes
BIG = {"workflow": "expense-approval", "input": {"amount": 900, "manager_id": "bob"}}  # waits for bob


@dataclass
class AppApi(Api):
    app: Litestar | None = None


@asynccontextmanager
async def serving(
    database: Database, secret: Path, *, redis: str | None = None, **limits: Any
) -> AsyncIterator[AppApi]:
    """An API app (a "process") with ``limits`` and ``redis``, on the test database and dev secret.

    It is served in the test's event loop through httpx's ASGI transport, so requests run
    concurrently as on a real server (Litestar's test client serves one request at a time).
    """
    settings = replace(make_settings(database, secret), redis=RedisSettings(url=redis), limits=LimitSettings(**limits))
    app = create_app(settings)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield AppApi(client, settings, database, app=app)  # type: ignore[arg-type]


Serve = Callable[..., AbstractAsyncContextManager[AppApi]]


@pytest.fixture
def serve(truncated: Database, tmp_path: Path) -> Serve:
    """``serve(redis=..., **limits)``: an async context manager giving an :class:`AppApi`."""
    return functools.partial(serving, truncated, tmp_path / "dev-secret")


async def tenant_with_workflow(api: Api) -> tuple[uuid.UUID, dict[str, str]]:
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    uploaded = await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin, **YAML})
    assert uploaded.status_code == 201, uploaded.text
    return tenant, admin


def assert_refused(response: httpx.Response, status: int, code: str, most_seconds: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert 1 <= int(response.headers["retry-after"]) <= most_seconds


async def count(api: Api, headers: dict[str, str]) -> int:
    return len((await api.client.get("/v1/instances", params={"limit": 200}, headers=headers)).json()["items"])


async def test_the_start_rate_is_per_tenant_and_shared_by_processes_through_redis(serve: Serve, redis_url: str) -> None:
    async with serve(redis=redis_url, starts_per_minute=3) as one, serve(redis=redis_url, starts_per_minute=3) as two:
        _, noisy = await tenant_with_workflow(one)
        _, quiet = await tenant_with_workflow(one)
        for api in (one, two, one):
            assert (await api.client.post("/v1/instances", json=SMALL, headers=noisy)).status_code == 201
        for api in (two, one):
            refused = await api.client.post("/v1/instances", json=SMALL, headers=noisy)
            assert_refused(refused, 429, "rate_limited", 20)  # 3 a minute: one every 20 s after the burst
        assert await count(one, noisy) == 3
        assert (await two.client.get("/v1/instances", headers=noisy)).status_code == 200  # reads are not limited
        for api in (two, two, one):
            assert (await api.client.post("/v1/instances", json=SMALL, headers=quiet)).status_code == 201


async def test_without_redis_each_process_limits_its_own_starts(serve: Serve) -> None:
    async with serve(starts_per_minute=2) as embedded, serve(starts_per_minute=2) as other:
        _, admin = await tenant_with_workflow(embedded)
        statuses = [(await embedded.client.post("/v1/instances", json=SMALL, headers=admin)).status_code for _ in "abc"]
        assert statuses == [201, 201, 429]
        assert (await other.client.post("/v1/instances", json=SMALL, headers=admin)).status_code == 201


async def test_when_redis_does_not_answer_the_process_limits_starts_itself(serve: Serve) -> None:
    async with serve(redis=f"redis://127.0.0.1:{free_port()}/0", starts_per_minute=2) as api:
        _, admin = await tenant_with_workflow(api)
        statuses = [(await api.client.post("/v1/instances", json=SMALL, headers=admin)).status_code for _ in "abc"]
        assert statuses == [201, 201, 429]
        ready = await api.client.get("/v1/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unavailable")


async def test_under_overload_starts_are_shed_while_completions_go_through(serve: Serve) -> None:
    async with serve(max_starts_in_flight=1) as api:
        tenant, admin = await tenant_with_workflow(api)
        bob = api.token(tenant, "bob", "member", groups=("managers",))
        waiting = await api.client.post("/v1/instances", json=BIG, headers=admin)
        assert waiting.status_code == 201
        (task,) = (await api.client.get("/v1/tasks", headers=bob)).json()["items"]
        assert api.app is not None
        gate = api.app.state.start_limits.gate

        # Hold one start inside the process: its idempotency key waits on a table lock.
        owner = create_async_engine(api.database.owner_url, poolclass=NullPool)
        try:
            async with owner.connect() as conn:
                await conn.execute(text("LOCK TABLE idempotency_keys IN EXCLUSIVE MODE"))
                held = asyncio.ensure_future(
                    api.client.post("/v1/instances", json=SMALL, headers={**admin, "idempotency-key": "held"})
                )
                for _ in range(500):
                    if gate.in_flight == 1:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                assert gate.in_flight == 1 and not held.done()

                shed = await api.client.post("/v1/instances", json=SMALL, headers=admin)
                assert_refused(shed, 503, "overloaded", 1)
                claimed = await api.client.post(f"/v1/tasks/{task['id']}/claim", headers=bob)
                assert claimed.status_code == 200, claimed.text
                done = await api.client.post(
                    f"/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=bob
                )
                assert done.status_code == 200 and done.json()["status"] == "completed", done.text
                instance = (await api.client.get(f"/v1/instances/{waiting.json()['id']}", headers=admin)).json()
                assert instance["status"] == "completed"
                assert not held.done()
                await conn.rollback()
            assert (await asyncio.wait_for(held, 10)).status_code == 201
        finally:
            await owner.dispose()
        assert gate.in_flight == 0
        assert (await api.client.post("/v1/instances", json=SMALL, headers=admin)).status_code == 201


async def test_a_tenant_with_too_many_running_instances_is_refused(serve: Serve) -> None:
    async with serve(max_running_instances=1) as api:
        _, admin = await tenant_with_workflow(api)
        assert (await api.client.post("/v1/instances", json=BIG, headers=admin)).status_code == 201
        refused = await api.client.post("/v1/instances", json=BIG, headers=admin)
        assert_refused(refused, 429, "too_many_running", 60)
        _, other = await tenant_with_workflow(api)
        assert (await api.client.post("/v1/instances", json=BIG, headers=other)).status_code == 201


async def test_page_sizes_are_clamped_and_absurd_ones_refused(serve: Serve) -> None:
    async with serve(default_page_size=1, max_page_size=2) as api:
        _, admin = await tenant_with_workflow(api)
        started = {(await api.client.post("/v1/instances", json=BIG, headers=admin)).json()["id"] for _ in "abc"}
        for path in ("/v1/instances", "/v1/admin/tasks"):
            assert len((await api.client.get(path, headers=admin)).json()["items"]) == 1
            page = await api.client.get(path, params={"limit": 1_000}, headers=admin)
            assert page.status_code == 200 and len(page.json()["items"]) == 2
            cursor = page.json()["next_cursor"]
            rest = await api.client.get(path, params={"limit": 1_000, "cursor": cursor}, headers=admin)
            assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
            seen = {i.get("instance_id", i["id"]) for i in page.json()["items"] + rest.json()["items"]}
            assert seen == started, path
            absurd = await api.client.get(path, params={"limit": 100_000}, headers=admin)
            assert absurd.status_code == 400
            assert absurd.headers["content-type"].startswith("application/problem+json")


async def test_the_redis_bucket_refills_at_its_rate(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        limiter = RedisRateLimiter(client, Rate(limit=2, period=0.6))  # a burst of 2, then one per 0.3 s
        key = f"test-{uuid.uuid4()}"
        assert [await limiter.acquire(key) for _ in "ab"] == [0.0, 0.0]
        wait = await limiter.acquire(key)
        assert 0.2 < wait <= 0.3
        assert await limiter.acquire(f"test-{uuid.uuid4()}") == 0.0  # another key has its own bucket
        await asyncio.sleep(wait + 0.02)
        assert await limiter.acquire(key) == 0.0
        assert await limiter.acquire(key) > 0
        assert 0 < await client.pttl(KEY_PREFIX + key) <= 700  # the bucket expires once it is full again
    finally:
        await client.aclose()


async def test_the_local_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = LocalRateLimiter(Rate(limit=3, period=60.0), clock=lambda: now[0])
    assert [await limiter.acquire("t") for _ in "abc"] == [0.0, 0.0, 0.0]
    assert await limiter.acquire("t") == pytest.approx(20.0)
    now[0] = 19.9
    assert await limiter.acquire("t") == pytest.approx(0.1)
    now[0] = 20.0
    assert await limiter.acquire("t") == 0.0
    assert await limiter.acquire("t") == pytest.approx(20.0)
    assert await limiter.acquire("u") == 0.0
    now[0] = 1_000.0
    assert [await limiter.acquire("t") for _ in "abcd"] == [0.0, 0.0, 0.0, pytest.approx(20.0)]
