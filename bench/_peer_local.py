"""Peer side of bench/engine_local.py: the same workloads on litestar-workflows 0.3.3.

Runs under the peer's own venv (``.bench/peer-venv/bin/python bench/_peer_local.py --n 2000``)
and prints one JSON object: version, results per workload, and the workarounds below.
Timing and verification come from engine_local.py, so both sides are measured by the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from itertools import pairwise
from typing import Any

from engine_local import EXPECTED_KEYS, WORKLOADS, measure, verified
from litestar_workflows import (
    BaseHumanStep,
    BaseMachineStep,
    Edge,
    LocalExecutionEngine,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowRegistry,
    WorkflowStatus,
)

# Paths are relative to site-packages/litestar_workflows/.
WORKAROUNDS = [
    "steps take their name in the constructor (BaseMachineStep('s1'), BaseHumanStep('approve', "
    "title=...)); a class attribute `name` plus a no-argument constructor raises TypeError "
    "[steps/base.py: BaseMachineStep.__init__, BaseHumanStep.__init__]",
    "WorkflowRegistry has no register_definition(); register() wants an object with get_definition(), "
    "so each definition is wrapped in a small adapter [engine/registry.py: WorkflowRegistry.register]",
    "start_workflow() takes that workflow object, not the workflow's name ('linear' -> AttributeError: "
    "'str' object has no attribute 'get_definition') [engine/local.py: LocalExecutionEngine.start_workflow]",
    "start_workflow() returns RUNNING before any step has run (steps run in asyncio.create_task); "
    "the benchmark awaits that task, engine._running[instance.id], after start_workflow and after "
    "complete_human_task [engine/local.py: LocalExecutionEngine.start_workflow]",
    "a workflow pausing at a human step returns without removing its finished task from "
    "engine._running, and complete_human_task() only resumes `if instance_id not in self._running`, "
    "so the instance would stay RUNNING forever; the benchmark pops engine._running[instance.id] "
    "before complete_human_task() [engine/local.py: LocalExecutionEngine._run_workflow, "
    "LocalExecutionEngine.complete_human_task]",
]


class SetFlag(BaseMachineStep):
    async def execute(self, context: WorkflowContext) -> None:
        context.set(self.name, True)


class Workflow:
    """Adapter: what WorkflowRegistry.register() and start_workflow() actually call."""

    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        self.name, self.version = definition.name, definition.version
        self.description = definition.description

    def get_definition(self) -> WorkflowDefinition:
        return self.definition


def engine_for(name: str, steps: list[Any]) -> tuple[LocalExecutionEngine, Workflow]:
    workflow = Workflow(
        WorkflowDefinition(
            name=name,
            version="1.0.0",
            description=WORKLOADS[name],
            steps={step.name: step for step in steps},
            edges=[Edge(a.name, b.name) for a, b in pairwise(steps)],
            initial_step=steps[0].name,
            terminal_steps={steps[-1].name},
        )
    )
    registry = WorkflowRegistry()
    registry.register(workflow)
    return LocalExecutionEngine(registry), workflow


def linear_runner() -> Callable[[int], Awaitable[bool]]:
    engine, workflow = engine_for("linear", [SetFlag("s1"), SetFlag("s2"), SetFlag("s3")])

    async def run_one(i: int) -> bool:
        instance = await engine.start_workflow(workflow, initial_data={"n": i})
        await engine._running[instance.id]  # the steps run in this background task
        return verified(instance, WorkflowStatus.COMPLETED, i, EXPECTED_KEYS["linear"])

    return run_one


def human_runner() -> Callable[[int], Awaitable[bool]]:
    schema = {"type": "object", "properties": {"approved": {"type": "boolean"}}}
    approve = BaseHumanStep("approve", title="Approve", form_schema=schema)
    engine, workflow = engine_for("human", [SetFlag("s1"), approve, SetFlag("s3")])

    async def run_one(i: int) -> bool:
        instance = await engine.start_workflow(workflow, initial_data={"n": i})
        await engine._running[instance.id]  # runs s1, stops at "approve"
        if instance.status != WorkflowStatus.WAITING:
            return False
        del engine._running[instance.id]  # its stale finished task, else no resume
        await engine.complete_human_task(
            instance_id=instance.id, step_name="approve", user_id="u1", data={"approved": True}
        )
        await engine._running[instance.id]  # the resumed run: s3
        return verified(instance, WorkflowStatus.COMPLETED, i, EXPECTED_KEYS["human"])

    return run_one


async def run(n: int, workloads: list[str]) -> dict[str, Any]:
    runners = {"linear": linear_runner, "human": human_runner}
    return {key: await measure(runners[key](), n) for key in workloads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workload", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    args = parser.parse_args()
    results = asyncio.run(run(args.n, args.workload))
    print(json.dumps({"version": version("litestar-workflows"), "results": results, "workarounds": WORKAROUNDS}))


if __name__ == "__main__":
    main()
