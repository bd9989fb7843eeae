"""The hosted API: the workflow plugin at ``/v1``, health checks, OpenAPI."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from flowdeck_api.domain.health.controller import HealthController
from flowdeck_api.plugin import WorkflowPlugin, WorkflowPluginConfig
from flowdeck_runtime.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Litestar:
    """The Flowdeck API application."""
    settings = settings or get_settings()
    return Litestar(
        route_handlers=[Router(path="/v1", route_handlers=[HealthController])],
        plugins=[WorkflowPlugin(WorkflowPluginConfig(api_path_prefix="/v1", settings=settings))],
        request_max_body_size=settings.limits.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Flowdeck API",
            version="1.0.0",
            description="Multi-tenant workflows: definitions, instances, the task inbox. Errors are RFC 9457 "
            "problem details (`application/problem+json`) with a stable `code`.",
            path="/docs",
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
    )
