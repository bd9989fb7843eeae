"""Another tenant's objects answer 404 on every route and never change (reliability scenario 10).

The matrix is generated from the application's own route list: every route under ``/v1`` with a
path parameter must have a row in ``CASES`` (how to fill its path and body), and the test fails
when a route is added without one. Tenant B calls each route with tenant A's real ids and an
admin token (so only tenancy can refuse); A's objects are then re-read through the API and
fingerprinted in the database. The matrix runs twice: with the application's tenant clause, and
with it switched off, where row-level security alone must hold.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import make_url, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_runtime import tenancy
from flowdeck_store import WorkflowDefinitionModel
from tests.integration.api.conftest import EXPENSE, YAML, Api
from tests.integration.api.test_jobs import RENDER
from tests.integration.conftest import TABLES, Database

if TYPE_CHECKING:
    from litestar import Litestar

# Route ("METHOD /path/{param}") -> the JSON body to send (None: no body). Ordered so that tenant A
# can run the same table as a control: reads first, then claim, unclaim, reassign, complete. A's
# job is leased to A's admin: failing it with retry releases the lease, so completing it is a 409.
CASES: dict[str, dict[str, Any] | None] = {
    "GET /v1/definitions/{name}": None,
    "GET /v1/definitions/{name}/{version}": None,
    "GET /v1/definitions/{name}/{version}/graph": None,
    "POST /v1/definitions/{name}/{version}/activate": None,
    "GET /v1/instances/{instance_id}": None,
    "GET /v1/instances/{instance_id}/graph": None,
    "GET /v1/tasks/{task_id}": None,
    "POST /v1/tasks/{task_id}/claim": None,
    "POST /v1/tasks/{task_id}/unclaim": None,
    "POST /v1/tasks/{task_id}/reassign": {"assignee": "mallory", "candidate_groups": ["managers"]},
    "POST /v1/tasks/{task_id}/complete": {"data": {"approved": True, "comment": "from another tenant"}},
    "POST /v1/instances/{instance_id}/cancel": {"reason": "from another tenant"},
    "POST /v1/instances/{instance_id}/retry": {"from_step": "submit"},
    "POST /v1/jobs/{job_id}/fail": {"error": "from another tenant", "retry": True},
    "POST /v1/jobs/{job_id}/complete": {"output": {"from": "another tenant"}},
    "POST /v1/definitions/{name}/{version}/deactivate": None,
    "GET /v1/webhooks/{subscription_id}": None,
    "GET /v1/webhooks/{subscription_id}/deliveries": None,
    "DELETE /v1/webhooks/{subscription_id}": None,
}

# Routes whose path parameter is itself the credential, so "another tenant's id" has no meaning:
# whoever holds a callback token may use it once, whatever else they carry (test_callbacks.py
# covers unknown, used, expired and malformed tokens, and that a bearer token changes nothing).
EXEMPT = {"POST /v1/callbacks/{token}": "the single-use callback token is the only credential"}


@dataclass(frozen=True)
class Ids:
    """Tenant A's objects, named like the routes' path parameters."""

    name: str
    version: str
    instance_id: str
    task_id: str
    job_id: str
    subscription_id: str


@dataclass(frozen=True)
class World:
    a: uuid.UUID
    b: uuid.UUID
    admin_a: dict[str, str]
    admin_b: dict[str, str]
    ids: Ids


def parameterised_routes(app: Litestar) -> set[str]:
    """Every ``METHOD /path`` under /v1 whose path has a parameter (OPTIONS and HEAD aside)."""
    found: set[str] = set()
    for route in app.routes:
        if route.path_format.startswith("/v1/") and route.path_parameters:
            methods = getattr(route, "methods", {"WEBSOCKET"})
            found |= {f"{method} {route.path_format}" for method in methods if method not in {"OPTIONS", "HEAD"}}
    return found


async def build_world(api: Api) -> World:
    a = await api.tenant("a")
    b = await api.tenant("b")
    admin_a = api.token(a, "root", "admin", groups=("managers",))
    admin_b = api.token(b, "intruder", "admin", groups=("managers",))  # a same-named group in tenant B
    uploaded = await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin_a, **YAML})
    assert uploaded.status_code == 201, uploaded.text
    started = await api.client.post(
        "/v1/instances",
        json={"workflow": "expense-approval", "input": {"amount": 250, "manager_id": "bob"}},
        headers=admin_a,
    )
    assert started.status_code == 201 and started.json()["status"] == "waiting", started.text
    (task,) = (await api.client.get("/v1/admin/tasks", headers=admin_a)).json()["items"]
    assert (await api.client.post("/v1/definitions", json=RENDER, headers=admin_a)).status_code == 201
    rendering = await api.client.post("/v1/instances", json={"workflow": "render-report"}, headers=admin_a)
    assert rendering.status_code == 201 and rendering.json()["status"] == "waiting", rendering.text
    (job,) = (await api.client.post("/v1/jobs/fetch", json={"job_type": "pdf.render"}, headers=admin_a)).json()
    hook = await api.client.post("/v1/webhooks", json={"url": "https://hooks.example.com/a"}, headers=admin_a)
    assert hook.status_code == 201, hook.text
    ids = Ids("expense-approval", "1.0.0", started.json()["id"], task["id"], job["id"], hook.json()["id"])
    return World(a, b, admin_a, admin_b, ids)


async def api_view(api: Api, world: World) -> dict[str, Any]:
    """Everything tenant A's admin can read about its objects."""
    ids, headers = world.ids, world.admin_a
    paths = [
        f"/v1/definitions/{ids.name}",
        f"/v1/definitions/{ids.name}/{ids.version}",
        f"/v1/instances/{ids.instance_id}",
        f"/v1/tasks/{ids.task_id}",
        "/v1/instances",
        "/v1/admin/tasks",
        "/v1/definitions",
    ]
    view = {}
    for path in paths:
        response = await api.client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
        view[path] = response.json()
    return view


async def db_fingerprint(database: Database, tenant: uuid.UUID) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of ``tenant`` (read under its row-level security binding)."""
    engine = create_async_engine(database.owner_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT set_config('app.tenant_id', :t, false)"), {"t": str(tenant)})
            prints = {}
            digest = "count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            for table in TABLES:
                row = (await conn.execute(text(f"SELECT {digest} FROM {table} t"))).one()
                prints[table] = (int(row[0]), str(row[1]))
            return prints
    finally:
        await engine.dispose()


async def call(api: Api, route: str, ids: Ids, headers: dict[str, str]) -> Any:
    method, template = route.split(" ", 1)
    body = CASES[route]
    path = template.format(**asdict(ids))
    if body is None:
        return await api.client.request(method, path, headers=headers)
    return await api.client.request(method, path, json=body, headers=headers)


async def test_the_table_covers_exactly_the_parameterised_routes(api: Api) -> None:
    routes = parameterised_routes(api.app) - set(EXEMPT)
    assert len(routes) >= len(CASES) > 10
    missing, stale = routes - set(CASES), set(CASES) - routes
    assert not missing, f"add a cross-tenant case for every new route with a path parameter: {sorted(missing)}"
    assert not stale, f"these cases name routes that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("app_filter", [True, False], ids=["app-filter-and-rls", "rls-alone"])
async def test_another_tenants_ids_answer_404_and_change_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch, app_filter: bool
) -> None:
    assert parameterised_routes(api.app) == set(CASES) | set(EXEMPT)
    world = await build_world(api)
    before_api = await api_view(api, world)
    before_db = await db_fingerprint(api.database, world.a)
    assert before_db["workflow_instances"][0] == 2 and before_db["workflow_human_tasks"][0] == 1
    assert before_db["workflow_callback_tokens"][0] == 1
    monkeypatch.setattr(tenancy, "APP_FILTER", app_filter)
    if not app_filter:
        await assert_only_rls_is_left(api.database, world)

    for route in CASES:
        response = await call(api, route, world.ids, world.admin_b)
        assert response.status_code == 404, (route, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), route
        assert response.json()["code"] in {"not_found", "workflow_not_found"}, (route, response.json())
    for method, path, body in [
        ("POST", "/v1/instances", {"workflow": world.ids.name, "version": world.ids.version}),
        ("POST", "/v1/instances", {"workflow": world.ids.name}),
    ]:
        response = await api.client.request(method, path, json=body, headers=world.admin_b)
        assert response.status_code == 404 and response.json()["code"] == "workflow_not_found", (path, body)
    for path, params in [
        ("/v1/instances", {"workflow": world.ids.name}),
        ("/v1/tasks", {"workflow": world.ids.name}),
        ("/v1/admin/tasks", {}),
    ]:
        response = await api.client.get(path, params=params, headers=world.admin_b)
        assert response.status_code == 200 and response.json()["items"] == [], (path, response.text)
    assert (await api.client.get("/v1/definitions", headers=world.admin_b)).json() == []

    monkeypatch.setattr(tenancy, "APP_FILTER", True)
    assert await api_view(api, world) == before_api
    assert await db_fingerprint(api.database, world.a) == before_db

    # The control: the same table with A's own token reaches A's objects (no 404 anywhere), so
    # the 404s above came from tenancy, not from ids or paths that match nothing.
    for route in CASES:
        response = await call(api, route, world.ids, world.admin_a)
        assert response.status_code != 404 and response.status_code < 500, (route, response.text)
    assert (await api.client.get(f"/v1/tasks/{world.ids.task_id}", headers=world.admin_a)).json()["status"] == (
        "completed"
    )
    (job,) = (await api.client.post("/v1/jobs/fetch", json={"job_type": "pdf.render"}, headers=world.admin_a)).json()
    assert job["id"] == world.ids.job_id and job["attempt"] == 2  # A's own failure released its lease


async def assert_only_rls_is_left(database: Database, world: World) -> None:
    """With the switch off the API's clause is gone: a role that bypasses RLS would see A's rows."""
    query = select(WorkflowDefinitionModel.name).where(tenancy.in_tenant(WorkflowDefinitionModel, world.b))
    superuser = make_url(database.admin_url).set(database=make_url(database.app_url).database)
    engine = create_async_engine(superuser, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            assert sorted((await conn.execute(query)).scalars().all()) == sorted([world.ids.name, RENDER["name"]])
    finally:
        await engine.dispose()
