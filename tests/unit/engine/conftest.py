from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flowdeck_engine import (
    BaseMachineStep,
    Edge,
    FakeClock,
    InMemoryEventBus,
    LocalExecutionEngine,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowRegistry,
)


class Set(BaseMachineStep):
    """Sets ``key`` to ``value`` and appends its name to ``trail``."""

    def __init__(self, name: str, key: str | None = None, value: Any = True, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.key = key or name
        self.value = value

    async def execute(self, context: WorkflowContext) -> Any:
        context.set(self.key, self.value)
        context.set("trail", [*context.get("trail", []), self.name])
        return self.value


class Boom(BaseMachineStep):
    """Fails the first ``failures`` times it runs (always, by default)."""

    def __init__(self, name: str, failures: int = 10**9, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.failures = failures
        self.runs = 0

    async def execute(self, context: WorkflowContext) -> None:
        self.runs += 1
        context.set("boom_wrote", True)  # must not survive a failed attempt
        if self.runs <= self.failures:
            raise RuntimeError(f"boom #{self.runs}")
        context.set(self.name, "ok")


def definition(
    steps: list[Any], edges: list[Edge], *, name: str = "wf", version: str = "1.0.0", terminal: set[str] | None = None
) -> WorkflowDefinition:
    """A definition whose first step is initial and whose steps without outgoing edges are terminal."""
    by_name = {step.name: step for step in steps}
    sources = {edge.source for edge in edges}
    return WorkflowDefinition(
        name=name,
        version=version,
        description="test",
        steps=by_name,
        edges=edges,
        initial_step=steps[0].name,
        terminal_steps=terminal if terminal is not None else {n for n in by_name if n not in sources},
    )


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.bus = InMemoryEventBus()
        self.registry = WorkflowRegistry()
        self.engine = LocalExecutionEngine(self.registry, event_bus=self.bus, clock=self.clock)

    def register(self, d: WorkflowDefinition) -> WorkflowDefinition:
        self.registry.register_definition(d)
        return d

    async def advance(self, **kwargs: float) -> None:
        await self.clock.advance(timedelta(**kwargs))

    def event_types(self) -> list[str]:
        return [e.type for e in self.bus.events]


@pytest.fixture
def h() -> Harness:
    return Harness()
