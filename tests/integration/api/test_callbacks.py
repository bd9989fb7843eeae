"""POST /v1/callbacks/{token}: the token is the only credential, works once, and leaks nothing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.integration.api.conftest import YAML, Api

REVIEW = (Path(__file__).resolve().parents[3] / "examples/documents/document-review.yaml").read_bytes()


async def waiting_review(api: Api) -> tuple[dict[str, str], dict]:  # type: ignore[type-arg]
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    assert (await api.client.post("/v1/definitions", content=REVIEW, headers={**admin, **YAML})).status_code == 201
    started = await api.client.post(
        "/v1/instances", json={"workflow": "document-review", "input": {"document_id": "d-1"}}, headers=admin
    )
    assert started.status_code == 201, started.text
    instance = (await api.client.get(f"/v1/instances/{started.json()['id']}", headers=admin)).json()
    assert instance["current_steps"] == ["scan"]
    return admin, instance


async def test_a_callback_resumes_the_waiting_step_once(api: Api) -> None:
    admin, instance = await waiting_review(api)
    (callback,) = instance["callbacks"]
    assert callback["step_name"] == "scan" and callback["url"].startswith("/v1/callbacks/")

    delivered = await api.client.post(callback["url"], json={"clean": True})  # no bearer token
    assert delivered.status_code == 202, delivered.text
    after = (await api.client.get(f"/v1/instances/{instance['id']}", headers=admin)).json()
    assert after["current_steps"] == ["review"] and after["context"]["scan"] == {"clean": True}
    assert after["callbacks"] == []

    again = await api.client.post(callback["url"], json={"clean": False})
    assert again.status_code == 404 and again.json()["code"] == "not_found"
    final = (await api.client.get(f"/v1/instances/{instance['id']}", headers=admin)).json()
    assert final["context"]["scan"] == {"clean": True}


async def test_unknown_malformed_and_expired_tokens_all_answer_404(api: Api) -> None:
    admin, instance = await waiting_review(api)
    (callback,) = instance["callbacks"]
    for url in ("/v1/callbacks/" + "A" * 43, "/v1/callbacks/short", "/v1/callbacks/" + "x" * 200):
        response = await api.client.post(url, json={"clean": True})
        assert response.status_code == 404, (url, response.text)
    engine = create_async_engine(
        api.database.admin_url.rsplit("/", 1)[0] + "/" + api.database.app_url.rsplit("/", 1)[1], poolclass=NullPool
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE workflow_callback_tokens SET expires_at = now() - interval '1 minute'"))
    finally:
        await engine.dispose()
    expired = await api.client.post(callback["url"], json={"clean": True})
    assert expired.status_code == 404
    still = (await api.client.get(f"/v1/instances/{instance['id']}", headers=admin)).json()
    assert still["current_steps"] == ["scan"]


async def test_another_tenants_bearer_token_changes_nothing(api: Api) -> None:
    _, instance = await waiting_review(api)
    (callback,) = instance["callbacks"]
    other = await api.tenant("other")
    response = await api.client.post(
        callback["url"], json={"clean": True}, headers=api.token(other, "mallory", "admin")
    )
    assert response.status_code == 202  # the token decides; the bearer token is ignored on this route


async def test_callbacks_are_in_the_openapi_document_without_security(api: Api) -> None:
    schema = (await api.client.get("/docs/openapi.json")).json()
    operation = schema["paths"]["/v1/callbacks/{token}"]["post"]
    assert "security" not in operation and "security" not in schema  # no bearer token on this route
    assert "404" in operation["responses"]
    assert schema["paths"]["/v1/instances"]["post"]["security"] == [{"bearer": []}]
