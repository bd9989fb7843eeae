"""The OpenAPI document builds, and every operation documents its errors as problem details."""

from __future__ import annotations

from tests.integration.api.conftest import Api


async def test_every_route_is_documented_with_its_errors(api: Api) -> None:
    response = await api.client.get("/docs/openapi.json")
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    operations = [(path, method, op) for path, item in paths.items() for method, op in item.items()]
    assert len(operations) >= 18
    for path, method, op in operations:
        if path.startswith("/v1/health"):
            continue
        errors = {code: spec for code, spec in op["responses"].items() if code.startswith(("4", "5"))}
        assert "401" in errors, (method, path)
        for code, spec in errors.items():
            if code == "400" and "application/problem+json" not in spec.get("content", {}):
                continue  # Litestar's own parameter-validation response
            assert "application/problem+json" in spec["content"], (method, path, code)
    assert (await api.client.get("/docs")).status_code == 200
