"""Peer side of bench/store_persistent.py: litestar-workflows 0.3.3's PersistentExecutionEngine.

Runs under the peer venv (``.bench/peer-venv``, with the ``[db]`` extra and asyncpg) against a
database URL it is given, K instances in flight, a session (and an engine object) per instance,
as the peer cannot share one session between concurrent instances. An instance counts only when
the peer itself reports it completed (``get_instance(...).status``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from itertools import pairwise
from typing import Any

from advanced_alchemy.base import orm_registry
from litestar_workflows import (
    BaseHumanStep,
    BaseMachineStep,
    Edge,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowRegistry,
    WorkflowStatus,
)
from litestar_workflows.db import PersistentExecutionEngine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

WORKAROUNDS = [
    "steps take their name in the constructor; a small adapter object provides get_definition() "
    "(see bench/_peer_local.py)",
    "start_workflow() returns before any step ran: the benchmark awaits engine._running[id]; before "
    "complete_human_task() it pops that finished task, else the run never resumes",
    "a session per instance (an engine object per instance on it): one session cannot serve concurrent instances",
]


class SetFlag(BaseMachineStep):
    async def execute(self, context: WorkflowContext) -> None:
        context.set(self.name, True)


class Workflow:
    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        self.name, self.version = definition.name, definition.version
        self.description = definition.description

    def get_definition(self) -> WorkflowDefinition:
        return self.definition


def workflow_for(name: str, steps: list[Any]) -> tuple[WorkflowRegistry, Workflow]:
    workflow = Workflow(
        WorkflowDefinition(
            name=name,
            version="1.0.0",
            description=name,
            steps={step.name: step for step in steps},
            edges=[Edge(a.name, b.name) for a, b in pairwise(steps)],
            initial_step=steps[0].name,
            terminal_steps={steps[-1].name},
        )
    )
    registry = WorkflowRegistry()
    registry.register(workflow)
    return registry, workflow


async def measure(run_one: Callable[[int], Awaitable[bool]], n: int, k: int, warmup: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(k)

    async def one(i: int) -> bool:
        async with gate:
            try:
                return await run_one(i)
            except Exception:
                return False

    await asyncio.gather(*(one(-1 - i) for i in range(warmup)))
    start = time.perf_counter()
    ok = sum(await asyncio.gather(*(one(i) for i in range(n))))
    seconds = time.perf_counter() - start
    return {"n": n, "completed": ok, "failed": n - ok, "seconds": seconds, "per_second": ok / seconds}


async def run(url: str, n: int, k: int, warmup: int) -> dict[str, Any]:
    db = create_async_engine(url, pool_size=k, max_overflow=0)
    async with db.begin() as conn:
        await conn.run_sync(orm_registry.metadata.create_all)
    sessions = async_sessionmaker(db, expire_on_commit=False)
    linear = workflow_for("linear", [SetFlag("s1"), SetFlag("s2"), SetFlag("s3")])
    approve = BaseHumanStep("approve", title="Approve", form_schema={"type": "object"})
    human = workflow_for("human", [SetFlag("s1"), approve, SetFlag("s3")])

    async def run_linear(i: int) -> bool:
        registry, workflow = linear
        async with sessions() as session:
            engine = PersistentExecutionEngine(registry=registry, session=session)
            instance = await engine.start_workflow(workflow, initial_data={"n": i}, tenant_id="bench")  # type: ignore[arg-type]
            await engine._running[instance.id]
            return (await engine.get_instance(instance.id)).status == WorkflowStatus.COMPLETED

    async def run_human(i: int) -> bool:
        registry, workflow = human
        async with sessions() as session:
            engine = PersistentExecutionEngine(registry=registry, session=session)
            instance = await engine.start_workflow(workflow, initial_data={"n": i}, tenant_id="bench")  # type: ignore[arg-type]
            await engine._running.pop(instance.id)
            await engine.complete_human_task(instance.id, "approve", "u1", {"approved": True})
            task = engine._running.get(instance.id)
            if task is not None:
                await task
            return (await engine.get_instance(instance.id)).status == WorkflowStatus.COMPLETED

    results = {
        "linear": await measure(run_linear, n, k, warmup),
        "human": await measure(run_human, n, k, warmup),
    }
    await db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    results = asyncio.run(run(args.url, args.n, args.k, args.warmup))
    print(json.dumps({"version": version("litestar-workflows"), "results": results, "workarounds": WORKAROUNDS}))


if __name__ == "__main__":
    main()
