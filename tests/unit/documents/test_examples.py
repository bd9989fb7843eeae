"""The example documents: each is valid and runs to completion on the local engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from flowdeck_engine import WorkflowContext, WorkflowStatus
from flowdeck_engine.documents import ActionRegistry, Platform, load_definition

from .conftest import EXAMPLES, FakeTransport, Harness


def load(name: str, platform: Platform | None = None) -> Any:
    return load_definition((EXAMPLES / name).read_bytes(), syntax="yaml", platform=platform)


def succeeded(instance: Any) -> list[str]:
    return [r.step_name for r in instance.step_history if r.status.value == "succeeded"]


# --- expense approval --------------------------------------------------------------------------


async def test_expense_small_amount_is_approved_without_a_person(h: Harness) -> None:
    h.register(load("expense-approval.yaml"))
    instance = await h.engine.start_workflow("expense-approval", {"amount": 40, "employee_id": "e-1"})
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert succeeded(instance) == ["submit", "route", "auto_approve", "decide", "paid"]
    assert h.custom_events() == [("expense.approved", {"amount": 40, "employee": "e-1"})]


async def test_expense_escalates_to_finance_when_the_manager_is_slow(h: Harness) -> None:
    h.register(load("expense-approval.yaml"))
    data = {"amount": 900, "employee_id": "e-1", "manager_id": "m-7"}
    instance = await h.engine.start_workflow("expense-approval", data)
    assert instance.status is WorkflowStatus.WAITING
    (task,) = await h.engine.get_pending_tasks(instance_id=instance.id)
    assert (task.assignee, task.candidate_groups, task.title) == ("m-7", ("managers",), "Approve an expense claim")
    assert task.form_schema is not None and task.form_schema["required"] == ["approved"]
    assert task.due_at == h.clock.now() + (datetime(2026, 1, 3, tzinfo=UTC) - datetime(2026, 1, 1, tzinfo=UTC))
    await h.advance(hours=23)
    assert await h.engine.get_pending_tasks(user_id="f-1", groups={"finance-leads"}) == []
    await h.advance(hours=1)
    (task,) = await h.engine.get_pending_tasks(user_id="f-1", groups={"finance-leads"})
    assert task.assignee is None
    await h.engine.complete_human_task(instance.id, "manager_approval", "f-1", {"approved": True})
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert succeeded(instance)[-2:] == ["decide", "paid"]
    assert "HumanTaskReassigned" in [e.type for e in h.bus.events]


async def test_expense_rejected_by_the_manager(h: Harness) -> None:
    h.register(load("expense-approval.yaml"))
    instance = await h.engine.start_workflow("expense-approval", {"amount": 900, "manager_id": "m-7"})
    await h.engine.complete_human_task(instance.id, "manager_approval", "m-7", {"approved": False, "comment": "no"})
    assert instance.status is WorkflowStatus.COMPLETED
    assert succeeded(instance)[-1] == "rejected"
    assert h.custom_events() == [("expense.rejected", {"comment": "no"})]


# --- employee onboarding ----------------------------------------------------------------------


async def test_onboarding_runs_its_branches_in_parallel_and_joins(h: Harness) -> None:
    actions = ActionRegistry()
    orders: list[dict[str, Any]] = []

    @actions.action("hardware.order-laptop")
    async def order_laptop(context: WorkflowContext, inputs: dict[str, Any]) -> dict[str, Any]:
        orders.append(inputs)
        return {"order": "L-1", "model": inputs["model"]}

    transport = FakeTransport(body=json.dumps({"message_id": "w-9"}).encode())
    h.register(load("employee-onboarding.yaml", Platform(actions=actions, transport=transport)))
    instance = await h.engine.start_workflow("employee-onboarding", {"employee_id": "e-5"})
    assert instance.status is WorkflowStatus.WAITING
    assert sorted(instance.current_steps) == ["accounts", "buddy"]
    assert orders == [{"employee": "e-5", "model": "standard"}]
    assert instance.context.get("laptop_order") == {"order": "L-1", "model": "standard"}
    assert instance.context.get("status") == "onboarding"  # the join waits

    await h.engine.receive_callback(instance.id, "accounts", {"email": "e5@corp.example", "login": "e5"})
    assert instance.current_steps == ["buddy"]
    await h.engine.complete_human_task(instance.id, "buddy", "hr-1", {"buddy_id": "e-2"})
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert succeeded(instance)[-3:] == ["ready", "welcome", "announce"]
    (request,) = transport.requests
    assert (request.method, request.url) == ("POST", "https://hr.example.com/api/welcome")
    assert json.loads(request.body or b"") == {"employee": "e-5", "buddy": "e-2", "email": "e5@corp.example"}
    assert instance.context.get("welcome") == {"message_id": "w-9"}
    assert instance.context.get("accounts") == {"email": "e5@corp.example", "login": "e5"}
    assert h.custom_events() == [("employee.onboarded", {"employee": "e-5", "buddy": "e-2"})]


# --- document review --------------------------------------------------------------------------


async def test_review_publishes_at_the_embargo_time(h: Harness) -> None:
    h.register(load("document-review.yaml"))
    instance = await h.engine.start_workflow("document-review", {"document_id": "d-1"})
    assert instance.current_steps == ["scan"]
    await h.engine.receive_callback(instance.id, "scan", {"clean": True})
    assert instance.current_steps == ["review"]
    await h.engine.complete_human_task(
        instance.id, "review", "ed-1", {"approved": True, "publish_at": "2026-01-05T09:00:00+01:00"}
    )
    assert instance.current_steps == ["embargo"]
    await h.advance(days=4, hours=7, minutes=59)
    assert instance.status is WorkflowStatus.WAITING
    await h.advance(minutes=1)
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert succeeded(instance)[-2:] == ["embargo", "published"]
    assert h.custom_events() == [("document.published", {"document": "d-1"})]


@pytest.mark.parametrize(
    ("scan", "answer", "end"),
    [
        (None, None, "scan_failed"),  # the scanner never calls back
        ({"clean": False}, None, "rejected"),
        ({"clean": True}, "late", "rejected"),  # the editors let it lie for three days
        ({"clean": True}, {"approved": False}, "rejected"),
    ],
)
async def test_review_ends_other_ways(h: Harness, scan: Any, answer: Any, end: str) -> None:
    h.register(load("document-review.yaml"))
    instance = await h.engine.start_workflow("document-review", {"document_id": "d-1"})
    if scan is None:
        await h.advance(hours=1)
    else:
        await h.engine.receive_callback(instance.id, "scan", scan)
    if answer == "late":
        await h.advance(days=3)
    elif answer is not None:
        await h.engine.complete_human_task(instance.id, "review", "ed-1", answer)
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert succeeded(instance)[-1] == end
