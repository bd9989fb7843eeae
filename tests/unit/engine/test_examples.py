"""The seeds' examples, which differ from the seeds only in their import line, run to completion."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

from flowdeck_engine import WorkflowStatus

EXAMPLES = Path(__file__).parents[3] / "examples"


async def test_quickstart_expense_approval() -> None:
    ns = runpy.run_path(str(EXAMPLES / "expense_approval.py"))
    await ns["main"]()
    (instance,) = await ns["engine"].list_instances()
    assert instance.status is WorkflowStatus.COMPLETED
    data = instance.context.data
    assert data["status"] == "approved" and data["submitted"] is True
    assert data["approved"] is True and data["comments"] == "Approved for Q4 budget"
    assert data["requester_id"] == "alice@example.com"


async def test_quickstart_rejects_a_non_positive_amount() -> None:
    ns = runpy.run_path(str(EXAMPLES / "expense_approval.py"))
    instance = await ns["engine"].start_workflow("expense_approval", initial_data={"amount": 0})
    assert instance.status is WorkflowStatus.FAILED
    assert "Amount must be positive" in instance.error


async def test_readme_approval_workflow() -> None:
    ns = runpy.run_path(str(EXAMPLES / "approval_workflow.py"))
    await ns["main"]()
    (instance,) = await ns["engine"].list_instances()
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("status") == "processed"
    assert instance.context.get("approved") is True and instance.context.get("submitted") is True


def test_make_run_demo_shows_what_happened() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "show_expense_approval.py")], capture_output=True, text=True, check=True
    ).stdout
    assert "Workflow completed with status: approved" in out
    assert "WorkflowCompleted" in out and "flowchart TD" in out
