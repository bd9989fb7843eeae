"""The inbox: what each user finds (assigned to them, or unassigned and routed to one of their
groups), stable keyset pages, the inbox index kept in step by every writer, and the index used."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from flowdeck_store.inbox import ANYONE, INBOX_SQL, NO_DUE, inbox_page, principal_keys, principals
from tests.integration.api.conftest import Api
from tests.integration.conftest import _execute

# Four human steps at once: one assigned, three routed to groups (one of them to two groups).
ROUTING = {
    "format": "flowdeck.workflow/v1",
    "name": "routing",
    "version": "1.0.0",
    "initial_step": "start",
    "terminal_steps": ["end"],
    "steps": [
        {"name": "start", "kind": "machine", "action": {"type": "set", "values": {"ok": "True"}}},
        {"name": "mine", "kind": "human", "title": "Assigned", "assignee_expression": "context.get('who')"},
        {"name": "red", "kind": "human", "title": "Red", "candidate_groups": ["red"], "due": "PT1H"},
        {"name": "both", "kind": "human", "title": "Both", "candidate_groups": ["red", "blue"], "due": "PT2H"},
        {"name": "green", "kind": "human", "title": "Green", "candidate_groups": ["green"]},
        {"name": "end", "kind": "machine", "action": {"type": "set", "values": {"done": "True"}}},
    ],
    "edges": [{"source": "start", "target": step} for step in ("mine", "red", "both", "green")]
    + [{"source": step, "target": "end"} for step in ("mine", "red", "both", "green")],
}


async def _setup(api: Api, tenant: uuid.UUID, starts: int = 1, who: str = "ann") -> list[str]:
    admin = api.token(tenant, "root", "admin")
    response = await api.client.post("/v1/definitions", json=ROUTING, headers=admin)
    assert response.status_code == 201, response.text
    ids = []
    for _ in range(starts):
        started = await api.client.post(
            "/v1/instances", json={"workflow": "routing", "input": {"who": who}}, headers=admin
        )
        assert started.status_code == 201, started.text
        ids.append(started.json()["id"])
    return ids


async def _inbox(api: Api, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await api.client.get("/v1/tasks", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def _steps(items: list[dict[str, Any]]) -> list[str]:
    return [item["step_name"] for item in items]


def test_principals_of_a_task_and_of_a_user() -> None:
    assert principals("ann", ["red"]) == ["u:ann"]
    assert principals(None, ["red", "blue", "red"]) == ["g:blue", "g:red"]
    assert principals(None, []) == [ANYONE]
    assert principal_keys("ann", {"red", "blue"}) == ["u:ann", ANYONE, "g:blue", "g:red"]


async def test_each_user_sees_what_is_routed_to_them_in_due_order(api: Api) -> None:
    tenant = await api.tenant()
    await _setup(api, tenant)
    ann = api.token(tenant, "ann", "member")
    red = api.token(tenant, "rita", "member", groups=("red",))
    blue_green = api.token(tenant, "bo", "member", groups=("blue", "green", "nobody"))
    nobody = api.token(tenant, "ned", "member", groups=("yellow",))
    assert _steps(await _inbox(api, ann)) == ["mine"]
    assert _steps(await _inbox(api, red)) == ["red", "both"]  # by due time
    assert _steps(await _inbox(api, blue_green)) == ["both", "green"]  # no due time: last
    assert await _inbox(api, nobody) == []
    # Another tenant's user in the same groups, with the same name, finds nothing.
    other = await api.tenant("other")
    assert await _inbox(api, api.token(other, "rita", "member", groups=("red", "blue", "green"))) == []
    assert await _inbox(api, api.token(other, "ann", "member")) == []


async def test_pages_are_stable_and_complete(api: Api) -> None:
    tenant = await api.tenant()
    await _setup(api, tenant, starts=7)
    both = api.token(tenant, "rita", "member", groups=("red", "blue", "green"))
    everything = await _inbox(api, both, limit=50)
    assert len(everything) == 21 and len({item["id"] for item in everything}) == 21
    keys = [(item["due_at"] or "9999", item["id"]) for item in everything]
    for limit in (1, 2, 5):
        assert await _inbox(api, both, limit=limit) == everything
    assert sorted(keys[:14]) == keys[:14]  # those with a due time, in order (then the rest)
    red = await _inbox(api, both, limit=3, workflow="routing", due_before="2999-01-01T00:00:00Z")
    assert _steps(red) == ["red"] * 7 + ["both"] * 7
    assert await _inbox(api, both, workflow="nope") == []


async def test_the_index_follows_claims_completions_and_reassignments(api: Api) -> None:
    tenant = await api.tenant()
    await _setup(api, tenant)
    rita = api.token(tenant, "rita", "member", groups=("red",))
    bo = api.token(tenant, "bo", "member", groups=("blue",))
    red, both = await _inbox(api, rita)
    assert (await api.client.post(f"/v1/tasks/{red['id']}/claim", headers=rita)).status_code == 200
    assert _steps(await _inbox(api, rita)) == ["red", "both"]  # claimed tasks stay in the inbox
    done = await api.client.post(f"/v1/tasks/{red['id']}/complete", json={"data": {}}, headers=rita)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed" and done.json()["completed_by"] == "rita"
    assert (
        done.json()["completed_at"]
        == (await api.client.get(f"/v1/tasks/{red['id']}", headers=rita)).json()["completed_at"]
    )
    assert _steps(await _inbox(api, rita)) == ["both"]
    assert _steps(await _inbox(api, rita, status="completed")) == ["red"]
    # Reassigned from the groups to bo alone: out of rita's inbox, into bo's (once).
    admin = api.token(tenant, "root", "admin")
    moved = await api.client.post(f"/v1/tasks/{both['id']}/reassign", json={"assignee": "bo"}, headers=admin)
    assert moved.status_code == 200, moved.text
    assert await _inbox(api, rita) == []
    assert _steps(await _inbox(api, bo)) == ["both"]
    regrouped = await api.client.post(
        f"/v1/tasks/{both['id']}/reassign", json={"candidate_groups": ["red", "red"]}, headers=bo
    )
    assert regrouped.status_code == 200, regrouped.text
    assert _steps(await _inbox(api, rita)) == ["both"] and await _inbox(api, bo) == []
    # Canceling the instance closes its tasks: nobody's pending inbox holds them.
    ann = api.token(tenant, "ann", "member")
    (mine,) = await _inbox(api, ann)
    canceled = await api.client.post(f"/v1/instances/{mine['instance_id']}/cancel", json={"reason": "x"}, headers=admin)
    assert canceled.status_code == 200, canceled.text
    assert await _inbox(api, ann) == [] and await _inbox(api, rita) == []
    assert _steps(await _inbox(api, ann, status="canceled")) == ["mine"]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "nope"},
        {"cursor": "WyJ4IiwgInkiXQ"},
        {"due_before": "2030-01-01T00:00:00"},
        {"limit": 0},
        {"workflow": "a\x00b"},
        {"status": "done"},
    ],
)
async def test_bad_inbox_queries_are_4xx(api: Api, params: dict[str, Any]) -> None:
    tenant = await api.tenant()
    for path in ("/v1/tasks", "/v1/admin/tasks"):
        response = await api.client.get(path, params=params, headers=api.token(tenant, "ann", "admin"))
        assert response.status_code == 400, response.text


async def test_the_inbox_query_walks_the_inbox_index(api: Api) -> None:
    """With a tenant of 4,000 tasks in 40 groups, the planner reads the inbox index per principal
    (a range of at most a page each), never the candidate table as a whole."""
    tenant = await api.tenant()
    (instance_id,) = await _setup(api, tenant)
    await _execute_as_tenant(
        api,
        tenant,
        uuid.UUID(instance_id),
        "INSERT INTO workflow_human_tasks (id, tenant_id, instance_id, workflow_name, step_name, title, "
        "candidate_groups, status, due_at, created_at, updated_at) "
        "SELECT gen_random_uuid(), :t, :i, 'routing', 's' || n, 'x', jsonb_build_array('g' || (n % 40)), "
        "'pending', now() + n * interval '1 minute', now(), now() FROM generate_series(1, 4000) AS n",
        "INSERT INTO workflow_task_candidates (tenant_id, task_id, principal, status, due_key) "
        "SELECT tenant_id, id, 'g:' || (candidate_groups ->> 0), status, due_at FROM workflow_human_tasks "
        "WHERE step_name LIKE 's%'",
    )
    await _execute(api.database.owner_url, "ANALYZE workflow_human_tasks", "ANALYZE workflow_task_candidates")
    keys = principal_keys("u", {f"g{n}" for n in range(10)})
    args = (tenant, keys, "pending", datetime(1, 1, 1, tzinfo=UTC), uuid.UUID(int=0), NO_DUE, None, 51)
    async with api.app.state.tenants.transaction(tenant) as session:  # type: ignore[union-attr]
        raw: Any = (await (await session.connection()).get_raw_connection()).driver_connection
        plan = "\n".join(row[0] for row in await raw.fetch(f"EXPLAIN {INBOX_SQL}", *args))
        page = await inbox_page(session, tenant, keys, status="pending", limit=50)
    assert "ix_workflow_task_candidates_inbox" in plan, plan
    assert "Seq Scan on workflow_task_candidates" not in plan, plan
    assert [row["step_name"] for row in page] == [f"s{n}" for n in range(1, 4001) if n % 40 < 10][:50]


async def _execute_as_tenant(api: Api, tenant: uuid.UUID, instance_id: uuid.UUID, *statements: str) -> None:
    async with api.app.state.tenants.transaction(tenant) as session:  # type: ignore[union-attr]
        for statement in statements:
            await session.execute(text(statement), {"t": tenant, "i": instance_id})


async def test_the_inbox_works_on_the_embedded_sqlite_database(embedded: Api) -> None:
    client = embedded.client
    tenant = await embedded.tenant("solo")
    await _setup(embedded, tenant, starts=3)
    both = embedded.token(tenant, "rita", "member", groups=("red", "blue"))
    everything = await _inbox(embedded, both)
    assert _steps(everything) == ["red"] * 3 + ["both"] * 3
    assert await _inbox(embedded, both, limit=2) == everything
    assert _steps(await _inbox(embedded, embedded.token(tenant, "ann", "member"))) == ["mine"] * 3
    red = everything[0]
    done = await client.post(f"/v1/tasks/{red['id']}/complete", json={"data": {}}, headers=both)
    assert done.status_code == 200, done.text
    assert len(await _inbox(embedded, both)) == 5
    assert _steps(await _inbox(embedded, both, status="completed")) == ["red"]
    moved = await client.post(
        f"/v1/tasks/{everything[1]['id']}/reassign",
        json={"assignee": "ann"},
        headers=embedded.token(tenant, "root", "admin"),
    )
    assert moved.status_code == 200, moved.text
    assert len(await _inbox(embedded, both)) == 4
    assert len(await _inbox(embedded, embedded.token(tenant, "ann", "member"))) == 4
