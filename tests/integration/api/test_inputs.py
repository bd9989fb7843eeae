"""Bad inputs are answered with a 4xx problem (never a 500) before anything is stored.

Each test runs a table of cases against one tenant (an app and a tenant per case would make this
file slow); every assertion names its case.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx

from tests.integration.api.conftest import EXPENSE, YAML, Api

START = "/v1/instances"
JSON = {"content-type": "application/json"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None, case: object = "") -> dict[str, Any]:
    """The response is a problem-details body with ``status`` (and ``code``); returns the body."""
    assert response.status_code == status, (case, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), case
    body: dict[str, Any] = response.json()
    assert body["status"] == status and isinstance(body["code"], str) and body["code"], (case, body)
    if code is not None:
        assert body["code"] == code, (case, body)
    return body


async def admin_of_fresh_tenant(api: Api) -> dict[str, str]:
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    uploaded = await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin, **YAML})
    assert uploaded.status_code == 201, uploaded.text
    return admin


async def instance_count(api: Api, headers: dict[str, str]) -> int:
    listed = await api.client.get(START, headers=headers)
    assert listed.status_code == 200
    return len(listed.json()["items"])


def nested_input(levels: int) -> bytes:
    """A start body whose ``input`` holds arrays nested ``levels`` deep."""
    return b'{"workflow":"expense-approval","input":{"a":' + b"[" * levels + b"]" * levels + b"}}"


async def test_deep_json_is_a_400_and_beyond_the_limit_a_422_with_a_pointer(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    for levels in (1_000, 100_000):
        response = await api.client.post(START, content=nested_input(levels), headers={**admin, **JSON})
        assert_problem(response, 400, "invalid_json", levels)
    # The body object and "input" are two levels: 31 arrays in "a" make 33, one over the limit of 32.
    over = await api.client.post(START, content=nested_input(31), headers={**admin, **JSON})
    body = assert_problem(over, 422, "too_deep")
    assert [e["pointer"] for e in body["errors"]] == ["/input/a" + "/0" * 30]
    assert await instance_count(api, admin) == 0
    at_limit = await api.client.post(START, content=nested_input(30), headers={**admin, **JSON})
    assert at_limit.status_code == 201, at_limit.text
    assert await instance_count(api, admin) == 1


NUL_BODIES = {
    "in-a-string": (b'{"workflow":"expense-approval","input":{"note":"a\\u0000b"}}', "/input/note"),
    "in-a-key": (b'{"workflow":"expense-approval","input":{"a\\u0000b":1}}', "/input/a\x00b"),
    "deep-inside": (b'{"workflow":"expense-approval","input":{"x":[1,{"y":"\\u0000"}]}}', "/input/x/1/y"),
    "in-the-workflow-name": (b'{"workflow":"expense-\\u0000approval","input":{}}', "/workflow"),
}


async def test_a_nul_character_is_a_422_with_a_pointer(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    for case, (body, pointer) in NUL_BODIES.items():
        response = await api.client.post(START, content=body, headers={**admin, **JSON})
        problem = assert_problem(response, 422, "nul_character", case)
        assert [e["pointer"] for e in problem["errors"]] == [pointer], case
    some = uuid.uuid4()
    cancel = await api.client.post(f"{START}/{some}/cancel", json={"reason": "\x00"}, headers=admin)
    assert_problem(cancel, 422, "nul_character", "cancel")
    complete = await api.client.post(f"/v1/tasks/{some}/complete", json={"data": {"\x00": 1}}, headers=admin)
    assert_problem(complete, 422, "nul_character", "complete")
    assert await instance_count(api, admin) == 0


MALFORMED = {
    "NaN": b'{"workflow":"expense-approval","input":{"amount":NaN}}',
    "Infinity": b'{"workflow":"expense-approval","input":{"amount":Infinity}}',
    "1e999": b'{"workflow":"expense-approval","input":{"amount":1e999}}',
    "-1e999": b'{"workflow":"expense-approval","input":{"amount":-1e999}}',
    "truncated": b'{"workflow":"expense-approval",',
    "not-utf8": b"\xff\xfe",
    "array": b"[]",
    "string": b'"expense-approval"',
    "null": b"null",
}


async def test_malformed_or_misshapen_json_is_a_400(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    for case, body in MALFORMED.items():
        response = await api.client.post(START, content=body, headers={**admin, **JSON})
        assert_problem(response, 400, None, case)
    assert await instance_count(api, admin) == 0


UNKNOWN_OR_WRONG = {
    "tenant_id": {"workflow": "expense-approval", "input": {}, "tenant_id": str(uuid.uuid4())},
    "status": {"workflow": "expense-approval", "status": "completed"},
    "created_by": {"workflow": "expense-approval", "created_by": "someone-else"},
    "id": {"workflow": "expense-approval", "id": str(uuid.uuid4())},
    "int-workflow": {"workflow": 42},
    "list-input": {"workflow": "expense-approval", "input": []},
    "int-version": {"workflow": "expense-approval", "version": 1},
    "no-workflow": {"input": {}},
}


async def test_unknown_fields_and_wrong_types_are_a_400(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    for case, body in UNKNOWN_OR_WRONG.items():
        response = await api.client.post(START, json=body, headers=admin)
        assert_problem(response, 400, "invalid_request", case)
    some = uuid.uuid4()
    elsewhere = {
        "cancel-reason": api.client.post(f"{START}/{some}/cancel", json={"reason": 5}, headers=admin),
        "retry-from_step": api.client.post(f"{START}/{some}/retry", json={"from_step": ["a"]}, headers=admin),
        "complete-data": api.client.post(f"/v1/tasks/{some}/complete", json={"data": "yes"}, headers=admin),
        "complete-extra": api.client.post(f"/v1/tasks/{some}/complete", json={"data": {}, "by": "x"}, headers=admin),
        "reassign-groups": api.client.post(
            f"/v1/tasks/{some}/reassign", json={"candidate_groups": "managers"}, headers=admin
        ),
        "instance-id": api.client.get(f"{START}/not-a-uuid", headers=admin),
        "started_after": api.client.get(START, params={"started_after": "yesterday"}, headers=admin),
        "active_only": api.client.get("/v1/definitions", params={"active_only": "maybe"}, headers=admin),
        "task-status": api.client.get("/v1/tasks", params={"status": "whatever"}, headers=admin),
        "limit": api.client.get("/v1/tasks", params={"limit": "ten"}, headers=admin),
    }
    for case, call in elsewhere.items():
        response = await call
        # A path that is not a uuid matches no route at all: 404, like any unknown path.
        assert_problem(response, 404 if case == "instance-id" else 400, None, case)
    assert await instance_count(api, admin) == 0


BAD_PARAMETERS = {
    "nul-workflow": ("/v1/instances", {"workflow": "expense\x00approval"}),
    "nul-created_by": ("/v1/instances", {"created_by": "\x00"}),
    "nul-inbox-filter": ("/v1/tasks", {"workflow": "a\x00"}),
    "nul-admin-filter": ("/v1/admin/tasks", {"workflow": "a\x00"}),
    "nul-in-path": ("/v1/definitions/expense%00approval", {}),
    "nul-in-version": ("/v1/definitions/expense-approval/1.0.0%00", {}),
    "nul-in-a-name": ("/v1/definitions/expense-approval/1.0.0/graph", {"x\x00": "1"}),
    "naive-started_after": ("/v1/instances", {"started_after": "2024-01-01T00:00:00"}),
    "year-0-started_before": ("/v1/instances", {"started_before": "0001-01-01T00:00:00+14:00"}),
    "naive-due_before": ("/v1/tasks", {"due_before": "2024-01-01T00:00:00"}),
    "naive-admin-due_before": ("/v1/admin/tasks", {"due_before": "2024-01-01T00:00:00"}),
}


async def test_parameters_the_database_cannot_take_are_a_400(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    for case, (path, params) in BAD_PARAMETERS.items():
        assert_problem(await api.client.get(path, params=params, headers=admin), 400, None, case)
    activate = await api.client.post("/v1/definitions/expense%00approval/1.0.0/activate", headers=admin)
    assert_problem(activate, 400, "invalid_parameter")
    definition = (await api.client.get("/v1/definitions/expense-approval/1.0.0", headers=admin)).json()
    assert definition["is_active"] is True


async def test_a_body_over_the_route_limit_is_a_413(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    big = json.dumps({"workflow": "expense-approval", "input": {"blob": "x" * 300_000}}).encode()
    assert_problem(await api.client.post(START, content=big, headers={**admin, **JSON}), 413, "body_too_large")
    document = EXPENSE.replace(b"version: 1.0.0", b"version: 2.0.0") + b"\n# " + b"x" * 300_000 + b"\n"
    upload = await api.client.post("/v1/definitions", content=document, headers={**admin, **YAML})
    assert_problem(upload, 413, "body_too_large")
    huge = b'{"reason":"' + b"x" * 1_100_000 + b'"}'
    cancel = await api.client.post(f"{START}/{uuid.uuid4()}/cancel", content=huge, headers={**admin, **JSON})
    assert_problem(cancel, 413, "body_too_large")
    assert await instance_count(api, admin) == 0
    versions = (await api.client.get("/v1/definitions/expense-approval", headers=admin)).json()["versions"]
    assert [v["version"] for v in versions] == ["1.0.0"]


async def test_a_definition_in_an_unsupported_media_type_is_a_415(api: Api) -> None:
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    for media in ("text/plain", "application/xml", "multipart/form-data; boundary=x"):
        response = await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin, "content-type": media})
        assert_problem(response, 415, "unsupported_media_type", media)
    assert (await api.client.get("/v1/definitions", headers=admin)).json() == []


async def test_a_json_route_does_not_skip_its_checks_for_another_media_type(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    for media in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        deep = await api.client.post(START, content=nested_input(1_000), headers={**admin, "content-type": media})
        assert_problem(deep, 400, "invalid_json", media)
        nul = b'{"workflow":"expense-approval","input":{"note":"\\u0000"}}'
        response = await api.client.post(START, content=nul, headers={**admin, "content-type": media})
        assert_problem(response, 422, "nul_character", media)
    assert await instance_count(api, admin) == 0


def cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


BAD_CURSORS = {
    "not-base64": "%%%",
    "not-json": "bm90IGpzb24",
    "object": cursor({"a": 1}),
    "one-value": cursor(["2024-01-01T00:00:00+00:00"]),
    "numbers": cursor([1, 2]),
    "not-a-time": cursor(["not a time", str(uuid.uuid4())]),
    "naive-time": cursor(["2024-01-01T00:00:00", str(uuid.uuid4())]),
    "year-99999": cursor(["99999-01-01T00:00:00+00:00", str(uuid.uuid4())]),
    "not-a-uuid": cursor(["2024-01-01T00:00:00+00:00", "not-a-uuid"]),
    "int-id": cursor(["2024-01-01T00:00:00+00:00", 7]),
    "null-id": cursor(["2024-01-01T00:00:00+00:00", None]),
    "deep": base64.urlsafe_b64encode(b"[" * 5_000).decode(),
    "long": "A" * 5_000,
}


async def test_a_malformed_cursor_is_a_400(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    for path in ("/v1/instances", "/v1/tasks", "/v1/admin/tasks"):
        for case, value in BAD_CURSORS.items():
            response = await api.client.get(path, params={"cursor": value}, headers=admin)
            assert_problem(response, 400, "invalid_cursor", (path, case))


async def test_an_oversized_idempotency_key_is_a_400(api: Api) -> None:
    admin = await admin_of_fresh_tenant(api)
    body = {"workflow": "expense-approval", "input": {"amount": 5}}
    response = await api.client.post(START, json=body, headers={**admin, "idempotency-key": "k" * 256})
    assert_problem(response, 400, "invalid_request")
    assert await instance_count(api, admin) == 0
    fits = await api.client.post(START, json=body, headers={**admin, "idempotency-key": "k" * 255})
    assert fits.status_code == 201, fits.text
