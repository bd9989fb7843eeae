"""OpenTelemetry: engine spans as an interceptor, and OTLP export from the standard variables.

Spans: ``workflow.start`` (a new instance), ``workflow.<cause>`` (any later call on an instance:
a task completed, a callback, a worker resuming it), ``workflow.step`` (one attempt of a machine
step), ``workflow.transition`` (saving a change); each with tenant, workflow, instance and step
attributes. The start's trace context is stored with the instance (``metadata["trace"]``), so
every later span of the instance joins the trace its start request began, across human waits
and process boundaries; the request that caused a continuation is attached as a span link.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flowdeck_engine import WorkflowInstance

TRACE_KEY = "trace"
"""Where an instance's metadata keeps the trace context of its start."""


def _attributes(instance: WorkflowInstance) -> dict[str, str]:
    return {
        "flowdeck.tenant": instance.tenant_id or "",
        "flowdeck.workflow": instance.workflow_name,
        "flowdeck.version": instance.workflow_version,
        "flowdeck.instance": str(instance.id),
    }


class TracingInterceptor:
    """The engine interceptor that makes spans (see the module docs)."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._tracer = tracer or trace.get_tracer("flowdeck.engine")

    def starting(
        self, workflow: str, version: str, tenant_id: str | None, metadata: dict[str, Any]
    ) -> AbstractContextManager[object]:
        """``workflow.start``, a child of the current span (the request's); stores its context."""
        return self._start(workflow, version, tenant_id, metadata)

    @contextmanager
    def _start(self, workflow: str, version: str, tenant_id: str | None, metadata: dict[str, Any]) -> Iterator[object]:
        attributes = {"flowdeck.tenant": tenant_id or "", "flowdeck.workflow": workflow, "flowdeck.version": version}
        with self._tracer.start_as_current_span("workflow.start", attributes=attributes) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            metadata[TRACE_KEY] = carrier
            yield span

    def continuing(self, instance: WorkflowInstance, action: str) -> AbstractContextManager[object]:
        """``workflow.<action>`` in the instance's own trace, linked to the current span."""
        return self._continue(instance, action)

    @contextmanager
    def _continue(self, instance: WorkflowInstance, action: str) -> Iterator[object]:
        current = trace.get_current_span().get_span_context()
        links = [trace.Link(current)] if current.is_valid else []
        carrier = instance.context.metadata.get(TRACE_KEY)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else otel_context.get_current()
        with self._tracer.start_as_current_span(
            f"workflow.{action}", context=parent, links=links, attributes=_attributes(instance)
        ) as span:
            yield span

    def step(self, instance: WorkflowInstance, step_name: str, attempt: int) -> AbstractContextManager[object]:
        """``workflow.step`` for one attempt."""
        attributes: dict[str, str | int] = {
            **_attributes(instance),
            "flowdeck.step": step_name,
            "flowdeck.attempt": attempt,
        }
        return self._tracer.start_as_current_span("workflow.step", attributes=attributes)

    def saving(self, instance: WorkflowInstance, cause: str) -> AbstractContextManager[object]:
        """``workflow.transition`` around the save of one change."""
        return self._tracer.start_as_current_span(
            "workflow.transition", attributes={**_attributes(instance), "flowdeck.cause": cause}
        )


def configure_tracing(service_name: str) -> TracerProvider | None:
    """A tracer provider exporting over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces
    variant) is set, installed as the global one; None (tracing off) otherwise."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
