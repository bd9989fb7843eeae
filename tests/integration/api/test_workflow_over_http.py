"""The expense approval done entirely through the API, and the rules around it."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import insert, update
from sqlalchemy.pool import NullPool

from flowdeck_api.app import create_app
from flowdeck_api.domain.instances.schemas import InstanceStart
from flowdeck_store import IdempotencyKeyModel, bind_tenant, create_engine, session_factory
from tests.integration.api.conftest import EXPENSE, YAML, Api, served


async def upload_expense(api: Api, tenant) -> None:  # type: ignore[no-untyped-def]
    admin = api.token(tenant, "root", "admin")
    response = await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin, **YAML})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "expense-approval"


async def test_expense_approval_through_the_api(api: Api) -> None:
    tenant = await api.tenant()
    await upload_expense(api, tenant)
    alice = api.token(tenant, "alice", "member")
    bob = api.token(tenant, "bob", "member", groups=("managers",))

    started = await api.client.post(
        "/v1/instances",
        json={"workflow": "expense-approval", "input": {"amount": 250, "manager_id": "bob", "employee_id": "alice"}},
        headers=alice,
    )
    assert started.status_code == 201, started.text
    instance = started.json()
    assert instance["status"] == "waiting" and instance["current_steps"] == ["manager_approval"]

    inbox = (await api.client.get("/v1/tasks", headers=bob)).json()
    (task,) = inbox["items"]
    assert task["assignee"] == "bob" and task["title"] == "Approve an expense claim"
    assert (await api.client.get("/v1/tasks", headers=alice)).json()["items"] == []
    one = await api.client.get(f"/v1/tasks/{task['id']}", headers=bob)
    assert one.json()["form_schema"]["required"] == ["approved"]

    claimed = await api.client.post(f"/v1/tasks/{task['id']}/claim", headers=bob)
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "bob"
    done = await api.client.post(
        f"/v1/tasks/{task['id']}/complete", json={"data": {"approved": True, "comment": "ok"}}, headers=bob
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"

    final = (await api.client.get(f"/v1/instances/{instance['id']}", headers=alice)).json()
    assert final["status"] == "completed"
    assert final["context"]["approved"] is True and final["context"]["status"] == "submitted"
    assert [s["step_name"] for s in final["steps"] if s["status"] == "succeeded"][-1] == "paid"
    graph = (await api.client.get(f"/v1/instances/{instance['id']}/graph", headers=alice)).json()
    assert graph["mermaid"].startswith("flowchart TD") and "completed" in graph["mermaid"]


async def test_form_errors_are_all_reported_and_a_second_completion_conflicts(api: Api) -> None:
    tenant = await api.tenant()
    await upload_expense(api, tenant)
    bob = api.token(tenant, "bob", "member", groups=("managers",))
    await api.client.post(
        "/v1/instances",
        json={"workflow": "expense-approval", "input": {"amount": 900, "manager_id": "bob"}},
        headers=bob,
    )
    (task,) = (await api.client.get("/v1/tasks", headers=bob)).json()["items"]
    bad = await api.client.post(f"/v1/tasks/{task['id']}/complete", json={"data": {"comment": "x" * 600}}, headers=bob)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    problem = bad.json()
    assert problem["code"] == "invalid_form"
    assert {e["code"] for e in problem["errors"]} == {"form.required", "form.maxLength"}
    assert {e["pointer"] for e in problem["errors"]} == {"", "/comment"}

    ok = await api.client.post(f"/v1/tasks/{task['id']}/complete", json={"data": {"approved": False}}, headers=bob)
    assert ok.status_code == 200
    again = await api.client.post(f"/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=bob)
    assert again.status_code == 409 and again.json()["code"] == "task_not_open"
    instance = (await api.client.get(f"/v1/instances/{task['instance_id']}", headers=bob)).json()
    assert instance["context"]["approved"] is False


async def test_racing_claims_have_one_winner(api: Api) -> None:
    tenant = await api.tenant()
    await upload_expense(api, tenant)
    starter = api.token(tenant, "alice", "member")
    await api.client.post(
        "/v1/instances", json={"workflow": "expense-approval", "input": {"amount": 900}}, headers=starter
    )
    managers = [api.token(tenant, f"m{i}", "member", groups=("managers",)) for i in range(20)]
    (task,) = (await api.client.get("/v1/tasks", headers=managers[0])).json()["items"]
    results = await asyncio.gather(*(api.client.post(f"/v1/tasks/{task['id']}/claim", headers=m) for m in managers))
    assert sorted(r.status_code for r in results) == [200] + [409] * 19


async def test_roles(api: Api) -> None:
    tenant = await api.tenant()
    member = api.token(tenant, "m", "member")
    service = api.token(tenant, "svc", "service")
    upload = await api.client.post("/v1/definitions", content=EXPENSE, headers={**member, **YAML})
    assert upload.status_code == 403 and upload.json()["code"] == "forbidden"
    await upload_expense(api, tenant)
    started = await api.client.post(
        "/v1/instances", json={"workflow": "expense-approval", "input": {"amount": 900}}, headers=service
    )
    assert started.status_code == 201
    assert (await api.client.get("/v1/tasks", headers=service)).status_code == 403
    outsider = api.token(tenant, "eve", "member", groups=("sales",))
    admin = api.token(tenant, "root", "admin")
    (task,) = (await api.client.get("/v1/admin/tasks", headers=admin)).json()["items"]
    assert (await api.client.post(f"/v1/tasks/{task['id']}/claim", headers=outsider)).status_code == 404
    assert (await api.client.get(f"/v1/instances/{started.json()['id']}", headers=outsider)).status_code == 404
    retry = await api.client.post(f"/v1/instances/{started.json()['id']}/retry", json={}, headers=member)
    assert retry.status_code == 403


async def test_idempotent_start(api: Api) -> None:
    tenant = await api.tenant()
    await upload_expense(api, tenant)
    alice = {**api.token(tenant, "alice", "member"), "idempotency-key": "order-42"}
    body = {"workflow": "expense-approval", "input": {"amount": 5}}
    first = await api.client.post("/v1/instances", json=body, headers=alice)
    second = await api.client.post("/v1/instances", json=body, headers=alice)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    other = await api.client.post("/v1/instances", json={**body, "input": {"amount": 6}}, headers=alice)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    listed = (await api.client.get("/v1/instances", headers=alice)).json()
    assert len(listed["items"]) == 1


async def test_a_start_cut_off_before_it_answered_is_recovered_by_its_idempotency_key(api: Api) -> None:
    tenant = await api.tenant()
    await upload_expense(api, tenant)
    alice = api.token(tenant, "alice", "member")
    body = {"workflow": "expense-approval", "input": {"amount": 5}}
    fingerprint = hashlib.sha256(msgspec.json.encode(msgspec.convert(body, InstanceStart))).hexdigest()
    key = IdempotencyKeyModel

    async def keys(statement: Any) -> None:
        db = create_engine(api.database.app_url, poolclass=NullPool)
        try:
            async with session_factory(db)() as session:
                bind_tenant(session, tenant)
                async with session.begin():
                    await session.execute(statement)
        finally:
            await db.dispose()

    # The instance committed, then the request died before recording its answer: found by its key.
    first = await api.client.post("/v1/instances", json=body, headers={**alice, "idempotency-key": "a"})
    assert first.status_code == 201
    await keys(update(key).where(key.key == "a").values(response=None))
    again = await api.client.post("/v1/instances", json=body, headers={**alice, "idempotency-key": "a"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])

    # The request died before creating anything: "in progress" until the key is found abandoned.
    claimed = {"tenant_id": tenant, "scope": "instances.start", "key": "b", "request_hash": fingerprint}
    await keys(insert(key).values(id=uuid.uuid4(), **claimed))
    held = await api.client.post("/v1/instances", json=body, headers={**alice, "idempotency-key": "b"})
    assert held.status_code == 409 and held.json()["code"] == "idempotency_in_progress"
    await keys(update(key).where(key.key == "b").values(created_at=datetime.now(UTC) - timedelta(hours=1)))
    taken = await api.client.post("/v1/instances", json=body, headers={**alice, "idempotency-key": "b"})
    assert taken.status_code == 201, taken.text
    repeat = await api.client.post("/v1/instances", json=body, headers={**alice, "idempotency-key": "b"})
    assert (repeat.status_code, repeat.json()["id"]) == (200, taken.json()["id"])
    assert len((await api.client.get("/v1/instances", headers=alice)).json()["items"]) == 2


async def test_definitions_versions_activation_and_graph(api: Api) -> None:
    tenant = await api.tenant()
    await upload_expense(api, tenant)
    admin = api.token(tenant, "root", "admin")
    again = await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin, **YAML})
    assert again.status_code == 409 and again.json()["code"] == "definition_exists"
    v2 = EXPENSE.replace(b"version: 1.0.0", b"version: 1.1.0")
    assert (await api.client.post("/v1/definitions", content=v2, headers={**admin, **YAML})).status_code == 201
    latest = (await api.client.get("/v1/definitions", headers=admin)).json()
    assert [(d["name"], d["version"]) for d in latest] == [("expense-approval", "1.1.0")]
    versions = (await api.client.get("/v1/definitions/expense-approval", headers=admin)).json()
    assert [v["version"] for v in versions["versions"]] == ["1.0.0", "1.1.0"]
    off = await api.client.post("/v1/definitions/expense-approval/1.1.0/deactivate", headers=admin)
    assert off.json()["is_active"] is False
    started = await api.client.post(
        "/v1/instances", json={"workflow": "expense-approval", "input": {"amount": 1}}, headers=admin
    )
    assert started.json()["version"] == "1.0.0"
    pinned = await api.client.post(
        "/v1/instances", json={"workflow": "expense-approval", "version": "1.1.0", "input": {}}, headers=admin
    )
    assert pinned.status_code == 404 and pinned.json()["code"] == "workflow_not_found"
    graph = (await api.client.get("/v1/definitions/expense-approval/1.0.0/graph", headers=admin)).json()
    assert (
        graph["initial_step"] == "submit"
        and {"source": "submit", "target": "route"}.items() <= graph["edges"][0].items()
    )
    document = (await api.client.get("/v1/definitions/expense-approval/1.0.0", headers=admin)).json()
    assert document["document"]["name"] == "expense-approval"


async def test_an_invalid_document_reports_every_problem(api: Api) -> None:
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    broken = EXPENSE.replace(b"initial_step: submit", b"initial_step: nowhere").replace(
        b"condition: \"context.get('needs_approval')\"", b'condition: "context.get(("'
    )
    response = await api.client.post("/v1/definitions", content=broken, headers={**admin, **YAML})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "invalid_document"
    pointers = {e["pointer"] for e in problem["errors"]}
    assert "/initial_step" in pointers and any(p.startswith("/edges/1") for p in pointers)
    assert (await api.client.get("/v1/definitions", headers=admin)).json() == []


async def test_more_concurrent_requests_than_pooled_connections(api: Api) -> None:
    """A start or a completion holds one connection from its read to its write: it must never wait
    for a second one (a cold definition cache once made each wait, and a full pool deadlocked)."""
    settings = replace(api.settings, database=replace(api.settings.database, pool_size=2))
    tenant = await api.tenant()
    await upload_expense(api, tenant)  # through the fixture's app: this app's cache stays cold
    bob = api.token(tenant, "bob", "member", groups=("managers",))
    claim = {"workflow": "expense-approval", "input": {"amount": 900, "manager_id": "bob"}}
    async with served(create_app(settings)) as client:
        started = await asyncio.gather(*(client.post("/v1/instances", json=claim, headers=bob) for _ in range(12)))
        assert [r.status_code for r in started] == [201] * 12, started[0].text
    tasks = (await api.client.get("/v1/tasks", params={"limit": 50}, headers=bob)).json()["items"]
    assert len(tasks) == 12
    async with served(create_app(settings)) as client:  # a new process: its cache is cold again
        done = await asyncio.gather(
            *(
                client.post(f"/v1/tasks/{t['id']}/complete", json={"data": {"approved": True}}, headers=bob)
                for t in tasks
            )
        )
        assert [r.status_code for r in done] == [200] * 12, done[0].text
