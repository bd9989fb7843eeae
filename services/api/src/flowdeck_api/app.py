"""The hosted API: the workflow plugin at ``/v1``, health checks, OpenAPI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

from flowdeck_api.domain.health.controller import HealthController
from flowdeck_api.plugin import WorkflowPlugin, WorkflowPluginConfig
from flowdeck_runtime import heap
from flowdeck_runtime.settings import Settings, get_settings
from flowdeck_runtime.telemetry import configure_tracing

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractAsyncContextManager

    from opentelemetry.sdk.trace import TracerProvider

    from flowdeck_engine import StepQueue


def create_app(
    settings: Settings | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    step_queue: StepQueue | None = None,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
) -> Litestar:
    """The Flowdeck API application.

    Tracing is on when ``tracer_provider`` is given or the ``OTEL_EXPORTER_OTLP_*`` variables are
    set: server spans from Litestar's OpenTelemetry plugin, engine spans beneath them.
    ``step_queue`` and ``lifespan``: the embedded mode's in-process queue and the worker and
    scheduler that run beside the app (:mod:`flowdeck_api.embedded`).
    """
    settings = settings or get_settings()
    provider = tracer_provider or configure_tracing(settings.service_name)
    plugins: list[Any] = [
        WorkflowPlugin(
            WorkflowPluginConfig(
                api_path_prefix="/v1", settings=settings, tracer_provider=provider, step_queue=step_queue
            )
        )
    ]
    if provider is not None:
        plugins.append(OpenTelemetryPlugin(OpenTelemetryConfig(tracer_provider=provider, exclude=["/v1/health"])))
    return Litestar(
        route_handlers=[Router(path="/v1", route_handlers=[HealthController])],
        plugins=plugins,
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
        ),
        lifespan=list(lifespan),
        on_startup=[_settle_heap],
        debug=False,
    )


def _settle_heap(_: Litestar) -> None:
    """Start-up is done: what it built is out of the garbage collector's way from now on."""
    heap.settle()
