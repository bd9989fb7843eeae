"""Spans from an in-memory exporter: one trace from the start request through the steps, and on
across the human wait when the task is completed by another request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowdeck_api.app import create_app
from tests.integration.api.conftest import EXPENSE, YAML, Api, make_settings, served
from tests.integration.conftest import Database


@pytest.fixture
async def traced(truncated: Database, tmp_path: Path) -> AsyncIterator[tuple[Api, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(truncated, tmp_path / "dev-secret")
    async with served(create_app(settings, tracer_provider=provider)) as client:
        yield Api(client, settings, truncated), exporter


async def test_one_trace_from_the_start_request_through_the_steps_and_the_human_wait(
    traced: tuple[Api, InMemorySpanExporter],
) -> None:
    api, exporter = traced
    tenant = await api.tenant()
    admin = api.token(tenant, "root", "admin")
    assert (await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin, **YAML})).status_code == 201
    exporter.clear()

    body = {"workflow": "expense-approval", "input": {"amount": 500, "manager_id": "bob"}}
    instance = (await api.client.post("/v1/instances", json=body, headers=admin)).json()
    spans = exporter.get_finished_spans()
    start = next(s for s in spans if s.name == "workflow.start")
    server = next(s for s in spans if s.kind.name == "SERVER" and "/v1/instances" in s.name)
    assert start.context.trace_id == server.context.trace_id
    assert start.parent is not None and start.parent.span_id == server.context.span_id
    steps = [s for s in spans if s.name == "workflow.step"]
    assert [s.attributes["flowdeck.step"] for s in steps] == ["submit", "route"]
    assert all(s.context.trace_id == start.context.trace_id for s in steps)
    assert {s.attributes["flowdeck.instance"] for s in steps} == {instance["id"]}
    assert steps[0].attributes["flowdeck.tenant"] == str(tenant)
    assert any(s.name == "workflow.transition" for s in spans)

    exporter.clear()
    bob = api.token(tenant, "bob", "member", groups=("managers",))
    (task,) = (await api.client.get("/v1/tasks", headers=bob)).json()["items"]
    done = await api.client.post(f"/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=bob)
    assert done.status_code == 200
    spans = exporter.get_finished_spans()
    resumed = next(s for s in spans if s.name == "workflow.TaskCompleted")
    request = next(s for s in spans if s.kind.name == "SERVER" and "complete" in s.name)
    assert resumed.context.trace_id == start.context.trace_id  # the instance's trace, across the wait
    assert [link.context.span_id for link in resumed.links] == [request.context.span_id]
    later = [s.attributes["flowdeck.step"] for s in spans if s.name == "workflow.step"]
    assert later == ["decide", "paid"]
    assert all(s.context.trace_id == start.context.trace_id for s in spans if s.name.startswith("workflow."))
