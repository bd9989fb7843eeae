"""Shared helpers: a small valid document, the example files, an engine on a fake clock."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flowdeck_engine import FakeClock, InMemoryEventBus, LocalExecutionEngine, WorkflowDefinition, WorkflowRegistry
from flowdeck_engine.documents import HttpRequest, HttpResponse

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "examples" / "documents"
INVALID = Path(__file__).parent / "invalid"

MINIMAL: dict[str, Any] = {
    "format": "flowdeck.workflow/v1",
    "name": "minimal",
    "version": "1.0.0",
    "initial_step": "start",
    "terminal_steps": ["done"],
    "steps": [
        {"name": "start", "kind": "machine", "action": {"type": "set", "values": {"n": "1"}}},
        {"name": "done", "kind": "machine", "action": {"type": "emit", "event": "finished"}},
    ],
    "edges": [{"source": "start", "target": "done"}],
}


def minimal(*steps: dict[str, Any], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The minimal document; with ``steps``, those steps between ``start`` and ``done`` in a row."""
    doc = copy.deepcopy(MINIMAL)
    if steps:
        doc["steps"][1:1] = list(steps)
        names = ["start", *(s["name"] for s in steps), "done"]
        doc["edges"] = [{"source": a, "target": b} for a, b in itertools.pairwise(names)]
    if edges is not None:
        doc["edges"] = edges
    return doc


class Harness:
    """A local engine on a fake clock, with an event bus that keeps everything."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.bus = InMemoryEventBus()
        self.registry = WorkflowRegistry()
        self.engine = LocalExecutionEngine(self.registry, event_bus=self.bus, clock=self.clock)

    def register(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        self.registry.register_definition(definition)
        return definition

    async def advance(self, **kwargs: float) -> None:
        await self.clock.advance(timedelta(**kwargs))

    def custom_events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(e.event_type, e.payload) for e in self.bus.events if type(e).__name__ == "CustomEvent"]  # type: ignore[attr-defined]


class FakeTransport:
    """Answers every request with ``response``; keeps the requests."""

    def __init__(self, status: int = 200, body: bytes = b"{}") -> None:
        self.response = HttpResponse(status, body)
        self.requests: list[HttpRequest] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        return self.response


@pytest.fixture
def h() -> Harness:
    return Harness()
