"""Webhook subscriptions through the API: admins only, https only, the secret shown once."""

from __future__ import annotations

from tests.integration.api.conftest import Api


async def test_subscribe_read_list_and_remove(api: Api) -> None:
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    created = await api.client.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example.com/flowdeck", "event_types": ["WorkflowCompleted"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["event_types"] == ["WorkflowCompleted"] and hook["active"] is True

    one = (await api.client.get(f"/v1/webhooks/{hook['id']}", headers=admin)).json()
    assert one["secret"] is None and one["url"] == "https://hooks.example.com/flowdeck"
    assert [h["id"] for h in (await api.client.get("/v1/webhooks", headers=admin)).json()] == [hook["id"]]
    assert (await api.client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin)).json() == []
    bad_filter = await api.client.get(f"/v1/webhooks/{hook['id']}/deliveries?status=lost", headers=admin)
    assert bad_filter.status_code == 400

    assert (await api.client.delete(f"/v1/webhooks/{hook['id']}", headers=admin)).status_code == 204
    assert (await api.client.get(f"/v1/webhooks/{hook['id']}", headers=admin)).status_code == 404


async def test_only_admins_and_only_https(api: Api) -> None:
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    member = api.token(tenant, "alice", "member")
    url = {"url": "https://hooks.example.com/x"}
    assert (await api.client.post("/v1/webhooks", json=url, headers=member)).status_code == 403
    assert (await api.client.get("/v1/webhooks", headers=member)).status_code == 403
    for bad in ("http://hooks.example.com/x", "https://user:pw@hooks.example.com/x", "ftp://hooks.example.com/x"):
        response = await api.client.post("/v1/webhooks", json={"url": bad}, headers=admin)
        assert response.status_code == 422 and response.json()["code"] == "webhook.url_invalid", bad
    unknown = await api.client.post("/v1/webhooks", json={**url, "secret": "mine"}, headers=admin)
    assert unknown.status_code in {400, 422}
