"""Workflow documents the end-to-end and reliability tests upload."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from tests.e2e.stack import ROOT

EXPENSE = (ROOT / "examples/documents/expense-approval.yaml").read_bytes()


def _set(name: str, value: str = "True") -> dict[str, Any]:
    return {"name": name, "kind": "machine", "action": {"type": "set", "values": {name: value}}}


def machines(name: str = "three-machines", count: int = 3) -> dict[str, Any]:
    """``count`` machine steps one after another."""
    names = [f"m{i}" for i in range(1, count + 1)]
    return {
        "format": "flowdeck.workflow/v1",
        "name": name,
        "version": "1.0.0",
        "initial_step": names[0],
        "terminal_steps": [names[-1]],
        "steps": [_set(n) for n in names],
        "edges": [{"source": a, "target": b} for a, b in pairwise(names)],
    }


def timer(seconds: float) -> dict[str, Any]:
    """A machine step, a timer of ``seconds``, a machine step."""
    return {
        "format": "flowdeck.workflow/v1",
        "name": "timed",
        "version": "1.0.0",
        "initial_step": "before",
        "terminal_steps": ["after"],
        "steps": [
            _set("before"),
            {"name": "wait", "kind": "timer", "duration": f"PT{seconds}S"},
            _set("after"),
        ],
        "edges": [{"source": "before", "target": "wait"}, {"source": "wait", "target": "after"}],
    }


def escalation(seconds: float) -> dict[str, Any]:
    """A task for ``managers`` (a reminder after half of ``seconds``) reassigned to ``finance-leads``
    after ``seconds``, then a machine step."""
    return {
        "format": "flowdeck.workflow/v1",
        "name": "escalating",
        "version": "1.0.0",
        "initial_step": "approve",
        "terminal_steps": ["done"],
        "steps": [
            {
                "name": "approve",
                "kind": "human",
                "title": "Approve",
                "candidate_groups": ["managers"],
                "form": {"type": "object", "properties": {"approved": {"type": "boolean"}}},
                "reminder": f"PT{seconds / 2}S",
                "escalation": {"after": f"PT{seconds}S", "reassign_to": ["finance-leads"]},
            },
            _set("done"),
        ],
        "edges": [{"source": "approve", "target": "done"}],
    }


def parallel() -> dict[str, Any]:
    """``start`` fans out to three machine branches, ``join`` waits for all three, then ``end``."""
    return {
        "format": "flowdeck.workflow/v1",
        "name": "fan-out",
        "version": "1.0.0",
        "initial_step": "start",
        "terminal_steps": ["end"],
        "steps": [_set("start"), _set("a"), _set("b"), _set("c"), _set("join", "'joined'"), _set("end")],
        "edges": [
            {"source": "start", "target": "a"},
            {"source": "start", "target": "b"},
            {"source": "start", "target": "c"},
            {"source": "a", "target": "join"},
            {"source": "b", "target": "join"},
            {"source": "c", "target": "join"},
            {"source": "join", "target": "end"},
        ],
    }


def external_job() -> dict[str, Any]:
    """A machine step, an external job the tenant's own worker runs (``pdf.render``), a machine step."""
    return {
        "format": "flowdeck.workflow/v1",
        "name": "render-report",
        "version": "1.0.0",
        "initial_step": "prepare",
        "terminal_steps": ["done"],
        "steps": [
            _set("prepare"),
            {
                "name": "render",
                "kind": "machine",
                "action": {"type": "external", "job_type": "pdf.render", "timeout": "PT1H", "result_key": "pdf"},
            },
            _set("done"),
        ],
        "edges": [{"source": "prepare", "target": "render"}, {"source": "render", "target": "done"}],
    }
