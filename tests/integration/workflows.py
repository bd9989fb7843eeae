"""Workflows the integration tests run."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from flowdeck_engine import (
    BaseHumanStep,
    BaseMachineStep,
    Edge,
    RetryPolicy,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowRegistry,
)


class SetFlag(BaseMachineStep):
    """Sets ``context[name] = True``."""

    async def execute(self, context: WorkflowContext) -> None:
        context.set(self.name, True)


class Approve(BaseHumanStep):
    """A human approval offered to the ``managers`` group."""

    name = "approve"
    title = "Approve"
    form_schema = {"type": "object", "properties": {"approved": {"type": "boolean"}}}
    candidate_groups = ("managers",)


class Flaky(BaseMachineStep):
    """Fails while ``context['fail']`` is true."""

    name = "flaky"

    async def execute(self, context: WorkflowContext) -> Any:
        if context.get("fail"):
            raise RuntimeError("flaky failed")
        context.set("flaky", True)
        return {"ok": True}


def linear(name: str, steps: list[Any]) -> WorkflowDefinition:
    """Steps one after another."""
    return WorkflowDefinition(
        name=name,
        version="1.0.0",
        steps={s.name: s for s in steps},
        edges=[Edge(a.name, b.name) for a, b in pairwise(steps)],
        initial_step=steps[0].name,
        terminal_steps={steps[-1].name},
    )


def registry() -> WorkflowRegistry:
    """``machines`` (3 machine steps), ``approval`` (machine, human, machine), ``flaky`` (fails on demand)."""
    reg = WorkflowRegistry()
    reg.register_definition(linear("machines", [SetFlag("s1"), SetFlag("s2"), SetFlag("s3")]))
    reg.register_definition(linear("approval", [SetFlag("s1"), Approve(), SetFlag("s3")]))
    reg.register_definition(
        linear("flaky", [SetFlag("s1"), Flaky(retry_policy=RetryPolicy(max_attempts=1)), SetFlag("s3")])
    )
    return reg
