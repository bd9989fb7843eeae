"""Liveness and readiness (database and Redis reachable). No authentication."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.openapi import ResponseSpec
from sqlalchemy import text


class Health(msgspec.Struct, kw_only=True):
    """What was checked and how it went."""

    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


class HealthController(Controller):
    """Probes for orchestrators."""

    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process is up")
    async def live(self) -> Health:
        """Always ok while the process serves requests."""
        return Health(status="ok")

    @get(
        "/ready",
        summary="The database (and Redis, when configured) answer",
        responses={503: ResponseSpec(data_container=Health, description="A dependency does not answer")},
    )
    async def ready(self, request: Request[Any, Any, Any]) -> Response[Health]:
        """200 when every dependency answers, else 503 naming the one that did not."""
        state = request.app.state
        checks: dict[str, str] = {}
        try:
            async with state.db_engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready
            checks["database"] = f"unavailable: {type(exc).__name__}"
        redis = getattr(state, "redis", None)
        if redis is not None:
            try:
                await redis.ping()
                checks["redis"] = "ok"
            except Exception as exc:  # any failure means not ready
                checks["redis"] = f"unavailable: {type(exc).__name__}"
        ok = all(value == "ok" for value in checks.values())
        return Response(Health(status="ok" if ok else "unavailable", checks=checks), status_code=200 if ok else 503)
