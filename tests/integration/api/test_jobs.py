"""External jobs over HTTP: fetch (a lease, a long poll), complete, fail, lease expiry, roles."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_api.domain.jobs.wakeups import JobWakeups
from tests.integration.api.conftest import YAML, Api
from tests.integration.api.test_callbacks import REVIEW

RENDER = {
    "format": "flowdeck.workflow/v1",
    "name": "render-report",
    "version": "1.0.0",
    "initial_step": "prepare",
    "terminal_steps": ["done"],
    "steps": [
        {"name": "prepare", "kind": "machine", "action": {"type": "set", "values": {"status": "'queued'"}}},
        {
            "name": "render",
            "kind": "machine",
            "action": {"type": "external", "job_type": "pdf.render", "timeout": "PT1H", "result_key": "pdf"},
        },
        {"name": "done", "kind": "machine", "action": {"type": "set", "values": {"status": "'rendered'"}}},
    ],
    "edges": [{"source": "prepare", "target": "render"}, {"source": "render", "target": "done"}],
}


class World:
    def __init__(self, api: Api, tenant: uuid.UUID) -> None:
        self.api = api
        self.tenant = tenant
        self.admin = api.token(tenant, "root", "admin")
        self.worker = api.token(tenant, "worker-1", "service")
        self.other_worker = api.token(tenant, "worker-2", "service")

    async def start(self, report: str = "r-1") -> str:
        response = await self.api.client.post(
            "/v1/instances", json={"workflow": "render-report", "input": {"report": report}}, headers=self.admin
        )
        assert response.status_code == 201 and response.json()["status"] == "waiting", response.text
        return str(response.json()["id"])

    async def fetch(self, headers: dict[str, str] | None = None, **body: Any) -> list[dict[str, Any]]:
        response = await self.api.client.post(
            "/v1/jobs/fetch", json={"job_type": "pdf.render", **body}, headers=headers or self.worker
        )
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()
        return jobs

    async def instance(self, instance_id: str) -> dict[str, Any]:
        response = await self.api.client.get(f"/v1/instances/{instance_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def world(api: Api) -> World:
    tenant = await api.tenant()
    w = World(api, tenant)
    uploaded = await api.client.post("/v1/definitions", json=RENDER, headers=w.admin)
    assert uploaded.status_code == 201, uploaded.text
    return w


async def _as_admin(api: Api, sql: str) -> None:
    """``sql`` as the database superuser, on the app's database."""
    url = make_url(api.database.admin_url).set(database=make_url(api.database.app_url).database)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def expire_leases(api: Api) -> None:
    """Move every lease into the past (as the database superuser: row-level security aside)."""
    await _as_admin(
        api,
        "UPDATE workflow_callback_tokens SET lease_expires_at = now() - interval '1 second' "
        "WHERE lease_owner IS NOT NULL",
    )


async def test_a_fetched_job_is_leased_once_and_its_completion_resumes_the_instance(api: Api) -> None:
    w = await world(api)
    instance_id = await w.start()
    first, second = await asyncio.gather(w.fetch(max_jobs=5), w.fetch(w.other_worker, max_jobs=5))
    assert sorted([len(first), len(second)]) == [0, 1]  # racing fetchers: exactly one gets the job
    (job,) = first or second
    holder = w.worker if first else w.other_worker
    assert job["instance_id"] == instance_id and job["step_name"] == "render" and job["job_type"] == "pdf.render"
    assert job["input"] == {"report": "r-1", "status": "queued"} and job["attempt"] == 1
    assert await w.fetch() == [] and await w.fetch(w.other_worker) == []  # leased: not offered again

    stranger = w.other_worker if holder is w.worker else w.worker
    refused = await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"output": {"url": "x"}}, headers=stranger)
    assert refused.status_code == 409 and refused.json()["code"] == "job_not_leased", refused.text

    done = await api.client.post(
        f"/v1/jobs/{job['id']}/complete", json={"output": {"url": "https://files/r-1.pdf"}}, headers=holder
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed" and done.json()["instance_status"] == "completed"
    after = await w.instance(instance_id)
    assert after["status"] == "completed"
    assert after["context"]["pdf"] == {"url": "https://files/r-1.pdf"} and after["context"]["status"] == "rendered"

    again = await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"output": {}}, headers=holder)
    assert again.status_code == 404 and again.json()["code"] == "not_found"


async def test_jobs_of_another_type_or_a_webhook_are_not_offered(api: Api) -> None:
    w = await world(api)
    await w.start()
    assert (await api.client.post("/v1/definitions", content=REVIEW, headers={**w.admin, **YAML})).status_code == 201
    review = await api.client.post("/v1/instances", json={"workflow": "document-review"}, headers=w.admin)
    assert review.json()["current_steps"] == ["scan"], review.text  # a webhook's callback row
    assert await w.fetch(job_type="pdf.other") == []
    (job,) = await w.fetch(max_jobs=100)
    assert job["job_type"] == "pdf.render"


async def test_an_expired_lease_offers_the_job_again(api: Api) -> None:
    w = await world(api)
    instance_id = await w.start()
    (job,) = await w.fetch(lease_seconds=60)
    await expire_leases(api)
    late = await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"output": {}}, headers=w.worker)
    assert late.status_code == 409 and late.json()["code"] == "job_not_leased"
    (again,) = await w.fetch(w.other_worker)
    assert again["id"] == job["id"] and again["attempt"] == 2
    done = await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"output": {}}, headers=w.other_worker)
    assert done.status_code == 200, done.text
    assert (await w.instance(instance_id))["status"] == "completed"


async def test_a_failure_with_retry_offers_the_job_again_until_the_attempts_run_out(api: Api) -> None:
    w = await world(api)
    instance_id = await w.start()
    for attempt in (1, 2):
        (job,) = await w.fetch()
        assert job["attempt"] == attempt
        failed = await api.client.post(f"/v1/jobs/{job['id']}/fail", json={"error": "printer jam"}, headers=w.worker)
        assert failed.status_code == 200, failed.text
        assert failed.json()["status"] == "released" and failed.json()["instance_status"] == "waiting"
    (job,) = await w.fetch()
    assert job["attempt"] == 3
    last = await api.client.post(f"/v1/jobs/{job['id']}/fail", json={"error": "printer jam"}, headers=w.worker)
    assert last.status_code == 200 and last.json()["status"] == "failed", last.text
    after = await w.instance(instance_id)
    assert after["status"] == "failed" and "printer jam" in after["error"]
    assert await w.fetch() == []


async def test_a_retry_waits_for_its_backoff(api: Api) -> None:
    w = await world(api)
    await w.start()
    (job,) = await w.fetch()
    failed = await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"error": "busy", "retry_in_seconds": 1}, headers=w.worker
    )
    assert failed.status_code == 200 and failed.json()["status"] == "released"
    assert await w.fetch() == []
    (again,) = await w.fetch(wait_seconds=5)
    assert again["id"] == job["id"] and again["attempt"] == 2


async def test_a_failure_without_retry_fails_the_instance(api: Api) -> None:
    w = await world(api)
    instance_id = await w.start()
    (job,) = await w.fetch()
    failed = await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"error": "unsupported format", "retry": False}, headers=w.worker
    )
    assert failed.status_code == 200 and failed.json()["status"] == "failed", failed.text
    assert failed.json()["instance_status"] == "failed"
    after = await w.instance(instance_id)
    assert after["status"] == "failed" and "unsupported format" in after["error"]
    assert after["steps"][-1]["step_name"] == "render" and after["steps"][-1]["status"] == "failed"
    gone = await api.client.post(f"/v1/jobs/{job['id']}/fail", json={"error": "x"}, headers=w.worker)
    assert gone.status_code == 404


async def _listening(wakeups: JobWakeups) -> None:
    for _ in range(100):
        if wakeups.listening:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the API is not listening for job notifications")


async def test_a_long_poll_is_woken_by_a_new_job_also_after_its_listener_lost_its_connection(api: Api) -> None:
    w = await world(api)
    assert api.app is not None
    wakeups: JobWakeups = api.app.state.job_wakeups
    wakeups.poll_seconds = wakeups.fallback_seconds = 60  # only a notification can answer in time
    for attempt in range(2):
        waiting = asyncio.ensure_future(w.fetch(wait_seconds=20))
        await _listening(wakeups)
        await asyncio.sleep(0.3)
        assert not waiting.done()
        instance_id = await w.start(f"r-{attempt}")
        (job,) = await asyncio.wait_for(waiting, timeout=5)
        assert job["instance_id"] == instance_id
        # PostgreSQL drops the listener's connection: it listens again on a new one
        await _as_admin(api, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
        for _ in range(100):
            if not wakeups.listening:
                break
            await asyncio.sleep(0.02)


async def test_a_waiting_long_poll_looks_again_only_when_woken_or_every_few_seconds(api: Api) -> None:
    w = await world(api)
    assert api.app is not None
    looks: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "workflow_callback_tokens" in statement:
            looks.append(statement)

    event.listen(api.app.state.db_engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await w.fetch(wait_seconds=3) == []
    finally:
        event.remove(api.app.state.db_engine.sync_engine, "before_cursor_execute", count)
    # at the start, once listening began, and after 2 s: not four times a second (12)
    assert 2 <= len(looks) <= 4, looks


async def test_a_long_poll_with_nothing_to_do_answers_empty_after_its_wait(api: Api) -> None:
    w = await world(api)
    began = time.monotonic()
    assert await w.fetch(wait_seconds=0.6) == []
    assert 0.5 <= time.monotonic() - began < 5


async def test_members_may_not_fetch_complete_or_fail(api: Api) -> None:
    w = await world(api)
    await w.start()
    (job,) = await w.fetch()
    member = api.token(w.tenant, "worker-1", "member")  # even the lease holder's name, without the role
    for path, body in [
        ("/v1/jobs/fetch", {"job_type": "pdf.render"}),
        (f"/v1/jobs/{job['id']}/complete", {"output": {}}),
        (f"/v1/jobs/{job['id']}/fail", {"error": "x"}),
    ]:
        response = await api.client.post(path, json=body, headers=member)
        assert response.status_code == 403 and response.json()["code"] == "forbidden", path


@pytest.mark.parametrize(
    "body",
    [
        {"job_type": "pdf.render", "max_jobs": 0},
        {"job_type": "pdf.render", "max_jobs": 101},
        {"job_type": "pdf.render", "wait_seconds": 31},
        {"job_type": "pdf.render", "lease_seconds": 0},
        {"job_type": "pdf.render", "lease_seconds": 3601},
        {"job_type": ""},
        {"max_jobs": 1},
        {"job_type": "pdf.render", "unknown": True},
    ],
)
async def test_bad_fetches_are_refused(api: Api, body: dict[str, Any]) -> None:
    w = await world(api)
    response = await api.client.post("/v1/jobs/fetch", json=body, headers=w.worker)
    assert response.status_code == 400 and response.json()["code"] == "invalid_request", response.text


async def test_unknown_job_ids_answer_404(api: Api) -> None:
    w = await world(api)
    for job_id in (uuid.uuid4(), "not-a-uuid"):
        response = await api.client.post(f"/v1/jobs/{job_id}/complete", json={"output": {}}, headers=w.worker)
        assert response.status_code in {400, 404}, response.text
        assert response.status_code == 404 or job_id == "not-a-uuid"


async def test_jobs_are_in_the_openapi_document(api: Api) -> None:
    schema = (await api.client.get("/docs/openapi.json")).json()
    for path in ("/v1/jobs/fetch", "/v1/jobs/{job_id}/complete", "/v1/jobs/{job_id}/fail"):
        operation = schema["paths"][path]["post"]
        assert operation["security"] == [{"bearer": []}] and "403" in operation["responses"], path


async def test_jobs_work_on_the_embedded_sqlite_database(embedded: Api) -> None:
    client = embedded.client
    tenant = await embedded.tenant("solo")
    w = World(embedded, tenant)
    assert (await client.post("/v1/definitions", json=RENDER, headers=w.admin)).status_code == 201
    instance_id = await w.start()
    first, second = await asyncio.gather(w.fetch(), w.fetch(w.other_worker))
    (job,) = first + second
    holder = w.worker if first else w.other_worker
    done = await client.post(f"/v1/jobs/{job['id']}/complete", json={"output": {"url": "u"}}, headers=holder)
    assert done.status_code == 200, done.text
    assert (await w.instance(instance_id))["context"]["pdf"] == {"url": "u"}
