"""Step groups: several steps combined into one, usable wherever a step is.

A group runs inside one step execution: its children share the execution's context and its
retry policy and timeout. Children must themselves run to completion (machine steps or groups);
human, timer and webhook steps wait for the outside world and belong in the workflow's graph.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from flowdeck_engine.conditions import compile_condition
from flowdeck_engine.enums import StepType
from flowdeck_engine.exceptions import ValidationError
from flowdeck_engine.steps import BaseStep

if TYPE_CHECKING:
    from flowdeck_engine.context import WorkflowContext
    from flowdeck_engine.steps import Step

_RUNNABLE = frozenset({StepType.MACHINE, StepType.GATEWAY})


def _check_children(group: str, steps: tuple[Step, ...]) -> None:
    for step in steps:
        if step.step_type not in _RUNNABLE:
            raise ValidationError(
                f"{group} cannot contain {step.step_type.value} step {step.name!r}: "
                "only machine steps and groups run inside a group"
            )


async def run_child(step: Step, context: WorkflowContext) -> Any:
    """Run one child step with its guard and hooks; a skipped child returns None."""
    if not await step.can_execute(context):
        return None
    try:
        result = await step.execute(context)
    except Exception as exc:
        await step.on_failure(context, exc)
        raise
    await step.on_success(context, result)
    return result


class SequentialGroup(BaseStep):
    """Runs its steps one after another; the result is the last step's result."""

    def __init__(self, *steps: Step, name: str | None = None, description: str | None = None) -> None:
        super().__init__(name, description)
        _check_children("SequentialGroup", steps)
        self.steps = steps

    async def execute(self, context: WorkflowContext) -> Any:
        """Run each step in order, stopping at the first failure."""
        result = None
        for step in self.steps:
            result = await run_child(step, context)
        return result


class ParallelGroup(BaseStep):
    """Runs its steps concurrently; the result is the list of their results, in order."""

    def __init__(self, *steps: Step, name: str | None = None, description: str | None = None) -> None:
        super().__init__(name, description)
        _check_children("ParallelGroup", steps)
        self.steps = steps

    async def execute(self, context: WorkflowContext) -> list[Any]:
        """Run every step concurrently; the first failure fails the group."""
        return list(await asyncio.gather(*(run_child(step, context) for step in self.steps)))


class ConditionalGroup(BaseStep):
    """Runs ``if_true`` when ``condition`` holds for the context, else ``if_false`` (if any).

    ``condition`` uses the same safe condition language as edges.
    """

    def __init__(
        self,
        condition: str,
        if_true: Step,
        if_false: Step | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(name, description)
        _check_children("ConditionalGroup", (if_true,) if if_false is None else (if_true, if_false))
        self.condition = compile_condition(condition)
        self.if_true = if_true
        self.if_false = if_false

    async def execute(self, context: WorkflowContext) -> Any:
        """Evaluate the condition and run the chosen step."""
        chosen = self.if_true if self.condition.test(context.data) else self.if_false
        return None if chosen is None else await run_child(chosen, context)
