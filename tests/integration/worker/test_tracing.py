"""The trace context travels in the job: the worker's spans join the trace the API request started."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine

from flowdeck_engine import WorkflowDefinition, WorkflowInstance
from flowdeck_engine.documents import load_definition
from flowdeck_runtime.dispatch import StoredWaits
from flowdeck_runtime.queue import SaqStepQueue, instance_job_key
from flowdeck_runtime.settings import WorkSettings
from flowdeck_runtime.telemetry import TracingInterceptor
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import TenantModel, session_factory
from flowdeck_store.engine import PersistentExecutionEngine, Start
from flowdeck_worker import InstanceRunner, WorkerContext, run_instance
from tests.e2e import documents


@dataclass
class Traced:
    """A tenant's engine with tracing and a SAQ step queue; its spans go to ``exporter``."""

    exporter: InMemorySpanExporter
    tracer: Tracer
    queue: SaqStepQueue
    tenants: Tenants
    tenant: uuid.UUID
    definition: WorkflowDefinition

    @property
    def engine(self) -> PersistentExecutionEngine:
        return self.tenants.engine(self.tenant)


@pytest.fixture
async def traced(pg_system_engine: AsyncEngine, redis_url: str) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    queue = SaqStepQueue.from_url(redis_url, WorkSettings(queue_name=f"trace-{uuid.uuid4().hex[:6]}"))
    tenants = Tenants(
        session_factory(pg_system_engine),
        interceptor=TracingInterceptor(tracer),
        step_queue=queue,
        dispatcher=StoredWaits(),
    )
    tenant = uuid.uuid4()
    async with tenants.transaction(tenant) as session:
        session.add(TenantModel(id=tenant, slug=f"t-{tenant.hex[:8]}", name="t"))
    definition = load_definition(documents.machines(count=3))
    tenants.engine(tenant).registry.register_definition(definition)
    try:
        yield Traced(exporter, tracer, queue, tenants, tenant, definition)
    finally:
        await queue.disconnect()


async def test_the_worker_joins_the_trace_of_the_request_that_made_the_steps_due(traced: Traced) -> None:
    with traced.tracer.start_as_current_span("POST /v1/instances") as request:
        instance = await traced.engine.start_workflow("three-machines", tenant_id=traced.tenant)
    job = await traced.queue.queue.job(instance_job_key(instance.id, instance.state.seq))
    assert job is not None
    kwargs = cast("dict[str, Any]", job.kwargs)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert trace_id in kwargs["trace"]["traceparent"]

    runner = InstanceRunner(traced.tenants, lease_seconds=10, heartbeat_seconds=5, tracer=traced.tracer)
    ctx = cast("WorkerContext", {"runner": runner})
    assert await run_instance(ctx, **kwargs) == "done"
    spans = {span.name: span for span in traced.exporter.get_finished_spans()}
    job_span, resume, start = spans["job.run_instance"], spans["workflow.resume"], spans["workflow.start"]
    assert start.parent is not None and start.parent.span_id == request.get_span_context().span_id
    # the job carries the trace its start stored: the same for a lone start and a batch of them
    assert job_span.parent is not None and job_span.parent.span_id == start.context.span_id
    assert resume.context.trace_id == request.get_span_context().trace_id  # the instance's own trace
    assert [link.context.span_id for link in resume.links] == [job_span.context.span_id]
    steps = [s for s in traced.exporter.get_finished_spans() if s.name == "workflow.step"]
    assert len(steps) == 3 and {s.context.trace_id for s in steps} == {resume.context.trace_id}


async def test_a_batched_start_alone_in_its_batch_sends_its_job_in_its_own_trace(traced: Traced) -> None:
    """The API's batched starts commit (and release their jobs) in the batcher's task, outside the
    request's span: the job must carry the trace the start stored, not the batcher's empty one."""
    engine = traced.engine
    async with engine.transaction(traced.tenant):
        with traced.tracer.start_as_current_span("POST /v1/instances") as request:
            [instance] = await engine.start_many(traced.tenant, [Start(traced.definition)])
    assert isinstance(instance, WorkflowInstance)
    job = await traced.queue.queue.job(instance_job_key(instance.id, instance.state.seq))
    assert job is not None
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert trace_id in cast("dict[str, Any]", job.kwargs)["trace"]["traceparent"]
