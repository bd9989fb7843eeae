"""The production stack as real processes: API, worker and scheduler on PostgreSQL and Redis.

Machine steps run on the worker (the API only enqueues them), timers and escalations fire from
the scheduler, parallel branches join, a webhook step takes its callback, an external job is fetched and completed
by the tenant's own worker, and outbound webhooks arrive signed at a local receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.e2e import documents
from tests.e2e.receiver import receiver
from tests.e2e.stack import Stack, wait_for

YAML = {"content-type": "application/yaml"}


async def _instance(client: httpx.AsyncClient, stack: Stack, headers: dict[str, str], iid: str) -> dict[str, Any]:
    response = await client.get(f"{stack.base}/v1/instances/{iid}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _finished(client: httpx.AsyncClient, stack: Stack, headers: dict[str, str], iid: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await _instance(client, stack, headers, iid)
        return body if body["status"] in {"completed", "failed", "canceled"} else None

    result: dict[str, Any] = await wait_for(done, 20, what=f"instance {iid} to finish")
    return result


async def _setup(stack: Stack, *docs: dict[str, Any] | bytes) -> tuple[uuid.UUID, dict[str, str]]:
    tenant = await stack.new_tenant()
    admin = stack.token(tenant, "admin", "admin")
    async with httpx.AsyncClient(timeout=10) as client:
        for doc in docs:
            if isinstance(doc, bytes):
                response = await client.post(f"{stack.base}/v1/definitions", content=doc, headers={**admin, **YAML})
            else:
                response = await client.post(f"{stack.base}/v1/definitions", json=doc, headers=admin)
            assert response.status_code == 201, response.text
    return tenant, admin


async def test_expense_approval_over_http_machine_steps_on_the_worker(stack: Stack) -> None:
    stack.start_api()
    tenant, admin = await _setup(stack, documents.EXPENSE)
    alice = stack.token(tenant, "alice", "member")
    bob = stack.token(tenant, "bob", "member", groups=("managers",))
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(
            f"{stack.base}/v1/instances",
            json={"workflow": "expense-approval", "input": {"amount": 250, "manager_id": "bob"}},
            headers=alice,
        )
        assert started.status_code == 201, started.text
        iid = started.json()["id"]
        # No worker yet: the API ran nothing itself; the first machine step waits in the queue.
        body = await _instance(client, stack, admin, iid)
        assert body["status"] == "running", body
        assert (await client.get(f"{stack.base}/v1/tasks", headers=bob)).json()["items"] == []

        stack.start_worker()

        async def task_for_bob() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await client.get(f"{stack.base}/v1/tasks", headers=bob)).json()["items"]
            return items

        (task,) = await wait_for(task_for_bob, 20, what="the approval task")
        assert (await client.post(f"{stack.base}/v1/tasks/{task['id']}/claim", headers=bob)).status_code == 200
        done = await client.post(
            f"{stack.base}/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=bob
        )
        assert done.status_code == 200, done.text
        final = await _finished(client, stack, admin, iid)
    assert final["status"] == "completed", final
    steps = await stack.tenant_sql(
        tenant,
        "SELECT step_name, status FROM workflow_step_executions WHERE instance_id = :i ORDER BY seq",
        i=uuid.UUID(iid),
    )
    ran = [name for name, status in steps if status == "succeeded"]
    assert ran == ["submit", "route", "manager_approval", "decide", "paid"], steps
    assert {name for name, status in steps if status == "skipped"} == {"auto_approve", "rejected"}, steps
    assert await stack.tenant_sql(tenant, "SELECT 1 FROM workflow_pending_work") == []


async def test_timer_escalation_and_parallel_join(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    stack.start_scheduler()
    tenant, admin = await _setup(stack, documents.timer(1), documents.escalation(1), documents.parallel())
    managers = stack.token(tenant, "mia", "member", groups=("managers",))
    finance = stack.token(tenant, "fred", "member", groups=("finance-leads",))
    async with httpx.AsyncClient(timeout=10) as client:
        ids = {}
        for name in ("timed", "escalating", "fan-out"):
            started = await client.post(f"{stack.base}/v1/instances", json={"workflow": name}, headers=admin)
            assert started.status_code == 201, started.text
            ids[name] = started.json()["id"]

        joined = await _finished(client, stack, admin, ids["fan-out"])
        assert joined["status"] == "completed", joined

        timed = await _finished(client, stack, admin, ids["timed"])
        assert timed["status"] == "completed", timed

        # The managers' task goes to the finance leads after a second: theirs to complete.
        async def escalated() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await client.get(f"{stack.base}/v1/tasks", headers=finance)).json()["items"]
            return items

        (task,) = await wait_for(escalated, 20, what="the escalated task")
        assert (await client.get(f"{stack.base}/v1/tasks", headers=managers)).json()["items"] == []
        done = await client.post(
            f"{stack.base}/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=finance
        )
        assert done.status_code == 200, done.text
        final = await _finished(client, stack, admin, ids["escalating"])
        assert final["status"] == "completed", final

    fan = await stack.tenant_sql(
        tenant,
        "SELECT step_name FROM workflow_step_executions WHERE instance_id = :i AND status = 'succeeded'",
        i=uuid.UUID(ids["fan-out"]),
    )
    assert sorted(name for (name,) in fan) == ["a", "b", "c", "end", "join", "start"]
    # The reminder was sent once, while the task was the managers'.
    reminders = await stack.tenant_sql(
        tenant,
        "SELECT payload FROM workflow_outbox WHERE event_type = 'HumanTaskReminder' AND instance_id = :i",
        i=uuid.UUID(ids["escalating"]),
    )
    assert len(reminders) == 1 and reminders[0][0]["step_name"] == "approve", reminders
    assert reminders[0][0]["candidate_groups"] == ["managers"]
    # The timer, the reminder, the escalation: each fired once, and nothing waits any more.
    assert await stack.tenant_sql(tenant, "SELECT kind FROM workflow_timers") == []
    assert await stack.tenant_sql(tenant, "SELECT 1 FROM workflow_pending_work") == []


async def test_an_outbound_webhook_arrives_signed_after_a_retry(stack: Stack) -> None:
    stack.overrides.update({"FLOWDECK_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "FLOWDECK_WEBHOOK_INITIAL_DELAY": "0.5"})
    with receiver(fail_first=1) as (url, received):
        stack.start_api()
        stack.start_worker()
        stack.start_scheduler()
        tenant, admin = await _setup(stack, documents.machines(count=3))
        async with httpx.AsyncClient(timeout=10) as client:
            hook = await client.post(
                f"{stack.base}/v1/webhooks", json={"url": url, "event_types": ["WorkflowCompleted"]}, headers=admin
            )
            assert hook.status_code == 201, hook.text
            secret, hook_id = hook.json()["secret"], hook.json()["id"]
            started = await client.post(
                f"{stack.base}/v1/instances", json={"workflow": "three-machines"}, headers=admin
            )
            iid = started.json()["id"]
            await _finished(client, stack, admin, iid)

            async def delivered() -> list[dict[str, Any]]:
                log = (await client.get(f"{stack.base}/v1/webhooks/{hook_id}/deliveries", headers=admin)).json()
                return [d for d in log if d["status"] == "delivered"]

            (delivery,) = await wait_for(delivered, 20, what="the delivery")
    assert (
        delivery["attempts"] == 2
        and delivery["last_status_code"] == 204
        and delivery["event_type"] == ("WorkflowCompleted")
    )
    assert len(received.requests) == 2  # refused once, then delivered: nothing more
    for headers, body in received.requests:
        timestamp, mac = (part.split("=", 1)[1] for part in headers["Flowdeck-Signature"].split(","))
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(mac, expected)
        assert abs(time.time() - int(timestamp)) < 60
        assert headers["Flowdeck-Delivery"] == delivery["id"] and headers["Flowdeck-Event"] == "WorkflowCompleted"
        event = json.loads(body)
        assert event["type"] == "WorkflowCompleted" and event["instance_id"] == iid
        assert event["tenant_id"] == str(tenant)


async def test_a_webhook_callback_and_an_external_job(stack: Stack) -> None:
    stack.start_api()
    stack.start_worker()
    stack.start_scheduler()
    review = (documents.ROOT / "examples/documents/document-review.yaml").read_bytes()
    tenant, admin = await _setup(stack, review, documents.external_job())
    editor = stack.token(tenant, "eve", "member", groups=("editors",))
    service = stack.token(tenant, "renderer", "service")
    async with httpx.AsyncClient(timeout=10) as client:
        started = await client.post(
            f"{stack.base}/v1/instances",
            json={"workflow": "document-review", "input": {"document_id": "d"}},
            headers=admin,
        )
        iid = started.json()["id"]

        async def callback() -> list[dict[str, Any]]:
            body = await _instance(client, stack, admin, iid)
            callbacks: list[dict[str, Any]] = body["callbacks"]
            return callbacks

        (hook,) = await wait_for(callback, 20, what="the scan callback")  # "upload" ran on the worker
        assert (await client.post(f"{stack.base}{hook['url']}", json={"clean": True})).status_code == 202

        async def review_task() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await client.get(f"{stack.base}/v1/tasks", headers=editor)).json()["items"]
            return items

        (task,) = await wait_for(review_task, 20, what="the review task")
        now = datetime.now(UTC).isoformat()
        done = await client.post(
            f"{stack.base}/v1/tasks/{task['id']}/complete",
            json={"data": {"approved": True, "publish_at": now}},
            headers=editor,
        )
        assert done.status_code == 200, done.text
        published = await _finished(client, stack, admin, iid)  # the embargo timer fired, "published" ran
        assert published["status"] == "completed", published

        rendering = await client.post(f"{stack.base}/v1/instances", json={"workflow": "render-report"}, headers=admin)
        rid = rendering.json()["id"]

        async def job() -> list[dict[str, Any]]:
            response = await client.post(
                f"{stack.base}/v1/jobs/fetch", json={"job_type": "pdf.render", "wait_seconds": 1}, headers=service
            )
            jobs: list[dict[str, Any]] = response.json()
            return jobs

        (leased,) = await wait_for(job, 20, what="the external job")
        assert leased["instance_id"] == rid
        completed = await client.post(
            f"{stack.base}/v1/jobs/{leased['id']}/complete", json={"output": {"url": "s3://r.pdf"}}, headers=service
        )
        assert completed.status_code == 200, completed.text
        rendered = await _finished(client, stack, admin, rid)
    assert rendered["status"] == "completed" and rendered["context"]["pdf"] == {"url": "s3://r.pdf"}, rendered
    steps = await stack.tenant_sql(
        tenant,
        "SELECT step_name FROM workflow_step_executions WHERE instance_id = :i AND status = 'succeeded' ORDER BY seq",
        i=uuid.UUID(iid),
    )
    assert [s for (s,) in steps] == ["upload", "scan", "check_scan", "review", "decide", "embargo", "published"]
