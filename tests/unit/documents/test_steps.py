"""What each kind of document step does when it runs on the local engine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowdeck_engine import WorkflowContext, WorkflowStatus
from flowdeck_engine.documents import (
    ActionRegistry,
    ExternalJobStep,
    HttpCallError,
    Platform,
    load_definition,
)
from flowdeck_engine.exceptions import ValidationError

from .conftest import FakeTransport, Harness, minimal


def machine(name: str, action: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"name": name, "kind": "machine", "action": action, **more}


async def run(h: Harness, doc: dict[str, Any], data: dict[str, Any] | None = None, **platform: Any) -> Any:
    h.register(load_definition(doc, platform=Platform(**platform)))
    return await h.engine.start_workflow("minimal", data or {})


async def test_set_evaluates_every_value_against_the_context_as_it_was(h: Harness) -> None:
    values = {"a": "context.get('b', 0) + 1", "b": "context.get('a', 0) + 10", "tags": "['x', 'y']"}
    instance = await run(h, minimal(machine("compute", {"type": "set", "values": values})), {"a": 1, "b": 2})
    assert instance.status is WorkflowStatus.COMPLETED
    assert (instance.context.get("a"), instance.context.get("b"), instance.context.get("tags")) == (3, 11, ["x", "y"])


async def test_an_expression_that_fails_fails_the_step_without_echoing_values(h: Harness) -> None:
    doc = minimal(machine("compute", {"type": "set", "values": {"x": "context.get('secret') + 1"}}))
    instance = await run(h, doc, {"secret": "hunter2"})
    assert instance.status is WorkflowStatus.FAILED
    assert "ConditionEvaluationError" in (instance.error or "") and "hunter2" not in (instance.error or "")


async def test_emit_publishes_its_event_when_the_step_succeeds(h: Harness) -> None:
    doc = minimal(
        machine(
            "tell", {"type": "emit", "event": "order.placed", "payload": {"total": "context['order']['total'] * 2"}}
        )
    )
    await run(h, doc, {"order": {"total": 21}})
    assert h.custom_events()[0] == ("order.placed", {"total": 42})


async def test_http_sends_context_paths_and_merges_the_response(h: Harness) -> None:
    action = {
        "type": "http",
        "url": "https://crm.example.com/accounts?src=flowdeck",
        "method": "PUT",
        "body": {"id": "/customer/id", "name": "/customer/name", "missing": "/nope/x", "all": ""},
        "result_path": "/customer/crm",
        "timeout": "PT3S",
    }
    transport = FakeTransport(body=b'{"account": "A-1", "score": 7}')
    instance = await run(
        h, minimal(machine("sync", action)), {"customer": {"id": 5, "name": "Ada"}}, transport=transport
    )
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    (request,) = transport.requests
    assert (request.method, request.url, request.timeout) == ("PUT", action["url"], 3.0)
    assert json.loads(request.body or b"") == {
        "id": 5,
        "name": "Ada",
        "missing": None,
        "all": {"customer": {"id": 5, "name": "Ada"}, "n": 1},
    }
    assert instance.context.get("customer") == {"id": 5, "name": "Ada", "crm": {"account": "A-1", "score": 7}}


@pytest.mark.parametrize(
    ("status", "body", "attempts", "message"),
    [
        (404, b"", 1, "answered 404"),  # a client error is not retried
        (503, b"", 3, "answered 503"),  # a server error is, as the retry policy allows
        (200, b"<html>", 1, "not JSON"),
        (200, b'{"x": NaN}', 1, "cannot be stored"),
        (200, b"[1]", 1, "only an object"),
    ],
)
async def test_http_failures(h: Harness, status: int, body: bytes, attempts: int, message: str) -> None:
    action = {"type": "http", "url": "https://api.example.com/x", "result_path": ""}
    retry = {"max_attempts": 3, "initial_interval": "PT1S"}
    transport = FakeTransport(status, body)
    instance = await run(h, minimal(machine("call", action, retry=retry)), transport=transport)
    await h.advance(seconds=10)
    assert instance.status is WorkflowStatus.FAILED
    assert len(transport.requests) == attempts
    assert f"{HttpCallError.__name__}: " in (instance.error or "") and message in (instance.error or "")
    # Each attempt carries its own stable idempotency key: instance, step, attempt.
    keys = [r.idempotency_key for r in transport.requests]
    assert keys == [f"{instance.id}:call:{n}" for n in range(1, attempts + 1)]


async def test_external_job_waits_for_its_completion_then_stores_the_result(h: Harness) -> None:
    action = {"type": "external", "job_type": "crm.sync", "timeout": "PT1H", "result_key": "crm"}
    instance = await run(h, minimal(machine("sync", action)))
    assert instance.status is WorkflowStatus.WAITING and instance.current_steps == ["sync"]
    step = h.registry.get_definition("minimal").steps["sync"]
    assert isinstance(step, ExternalJobStep) and step.job_type == "crm.sync"
    await h.engine.receive_callback(instance.id, "sync", {"ok": True})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("crm") == {"ok": True}


async def test_external_job_times_out_along_its_on_timeout_edge(h: Harness) -> None:
    action = {"type": "external", "job_type": "crm.sync", "timeout": "PT1H"}
    doc = minimal(
        machine("sync", action), {"name": "late", "kind": "machine", "action": {"type": "emit", "event": "late"}}
    )
    doc["edges"] = [
        {"source": "start", "target": "sync"},
        {"source": "sync", "target": "done"},
        {"source": "sync", "target": "late", "on_timeout": True},
    ]
    doc["terminal_steps"] = ["done", "late"]
    instance = await run(h, doc)
    await h.advance(hours=1)
    assert instance.status is WorkflowStatus.COMPLETED
    assert h.custom_events() == [("late", {})]


async def test_platform_action_gets_its_inputs_and_stores_its_result(h: Harness) -> None:
    actions = ActionRegistry()
    seen: list[dict[str, Any]] = []

    async def score(context: WorkflowContext, inputs: dict[str, Any]) -> int:
        seen.append(inputs)
        return int(inputs["amount"]) // 10

    actions.register("risk.score", score)
    action = {
        "type": "platform",
        "name": "risk.score",
        "input": {"amount": "context.get('amount')"},
        "result_key": "risk",
    }
    instance = await run(h, minimal(machine("score", action)), {"amount": 250}, actions=actions)
    assert instance.context.get("risk") == 25 and seen == [{"amount": 250}]
    with pytest.raises(ValidationError, match="already registered"):
        actions.register("risk.score", score)
    with pytest.raises(ValidationError, match="not a valid action name"):
        actions.register("no spaces", score)


async def test_platform_action_not_known_where_it_runs_fails_the_step(h: Harness) -> None:
    instance = await run(h, minimal(machine("score", {"type": "platform", "name": "risk.score"})))
    assert instance.status is WorkflowStatus.FAILED
    assert "not available" in (instance.error or "")


@pytest.mark.parametrize(
    ("data", "assignee", "error"),
    [
        ({"manager_id": "m-1"}, "m-1", None),
        ({}, None, None),  # no one named: the candidate groups take it
        ({"manager_id": 7}, None, "did not give a user id"),
    ],
)
async def test_assignee_expression(h: Harness, data: dict[str, Any], assignee: str | None, error: str | None) -> None:
    human = {
        "name": "ask",
        "kind": "human",
        "assignee_expression": "context.get('manager_id')",
        "candidate_groups": ["g"],
    }
    instance = await run(h, minimal(human), data)
    if error is not None:
        assert instance.status is WorkflowStatus.FAILED and error in (instance.error or "")
        return
    (task,) = await h.engine.get_pending_tasks()
    assert task.assignee == assignee and task.candidate_groups == ("g",)


@pytest.mark.parametrize(
    ("deadline", "fires_after_hours"),
    [("2026-01-01T05:00:00Z", 5), ("2026-01-01T06:00:00+02:00", 4), ("2025-12-31T00:00:00+00:00", 0)],
)
async def test_timer_until_an_expression(h: Harness, deadline: str, fires_after_hours: int) -> None:
    timer = {"name": "wait", "kind": "timer", "until": "context.get('deadline')"}
    instance = await run(h, minimal(timer), {"deadline": deadline})
    if fires_after_hours:
        await h.advance(hours=fires_after_hours - 1)
        assert instance.status is WorkflowStatus.WAITING
        await h.advance(hours=1)
    else:
        await h.advance()
    assert instance.status is WorkflowStatus.COMPLETED


@pytest.mark.parametrize("deadline", ["2026-01-01T05:00:00", "tomorrow", 12, None])
async def test_timer_until_a_value_that_is_no_time_fails(h: Harness, deadline: Any) -> None:
    timer = {"name": "wait", "kind": "timer", "until": "context.get('deadline')"}
    instance = await run(h, minimal(timer), {"deadline": deadline})
    assert instance.status is WorkflowStatus.FAILED
    assert "ISO 8601 date-time with a time zone" in (instance.error or "")


async def test_timer_with_a_duration_and_a_webhook_with_a_result_key(h: Harness) -> None:
    steps = (
        {"name": "wait", "kind": "timer", "duration": "PT30M"},
        {"name": "hook", "kind": "webhook", "result_key": "payload"},
    )
    instance = await run(h, minimal(*steps))
    await h.advance(minutes=30)
    assert instance.current_steps == ["hook"]
    await h.engine.receive_callback(instance.id, "hook", [1, 2])
    assert instance.status is WorkflowStatus.COMPLETED and instance.context.get("payload") == [1, 2]


async def test_retry_and_timeout_of_a_machine_step(h: Harness) -> None:
    actions = ActionRegistry()
    calls: list[int] = []

    async def flaky(context: WorkflowContext, inputs: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("try again")

    actions.register("flaky", flaky)
    retry = {"max_attempts": 3, "initial_interval": "PT10S", "backoff_coefficient": 3, "maximum_interval": None}
    instance = await run(
        h, minimal(machine("call", {"type": "platform", "name": "flaky"}, retry=retry, timeout="PT5S")), actions=actions
    )
    step = h.registry.get_definition("minimal").steps["call"]
    assert step.retry_policy.initial_interval.total_seconds() == 10  # type: ignore[attr-defined]
    assert step.timeout.total_seconds() == 5  # type: ignore[attr-defined]
    await h.advance(seconds=10)
    assert len(calls) == 2
    await h.advance(seconds=30)
    assert instance.status is WorkflowStatus.COMPLETED and len(calls) == 3
