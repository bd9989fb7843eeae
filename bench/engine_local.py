"""In-process throughput of Flowdeck's engine versus litestar-workflows 0.3.3.

Two workloads, each run N times (default 2,000) one instance after another in one
process, after a warm-up of 100 instances on the same engine:

  (a) linear: three machine steps, each setting one context value;
  (b) human:  machine -> human -> machine, the human task completed as soon as
      ``start_workflow`` has returned.

Definition, registry and engine are built once per workload; only starting (and
completing) instances is timed, with ``time.perf_counter``. Every instance is checked
inside the timed loop (status completed, context holding the start data and the values
of all three steps); throughput counts verified instances only, failures are reported
(and make the exit status 1).

Flowdeck runs in this process, written against the *documented* litestar-workflows API.
The peer runs in ``bench/_peer_local.py`` under its own virtual environment
(``.bench/peer-venv``, created with this interpreter's ``-m venv`` + pip on first use,
reused while it holds litestar-workflows 0.3.3), through its real API plus the workarounds
that script lists and this driver prints.

Run: ``make bench`` or ``.venv/bin/python bench/engine_local.py [--n N] [--json] [--peer-only]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PEER_VENV = BENCH_DIR.parent / ".bench" / "peer-venv"
PEER_PACKAGE, PEER_VERSION = "litestar-workflows", "0.3.3"
WARMUP = 100
WORKLOADS = {
    "linear": "(a) 3 machine steps",
    "human": "(b) machine -> human -> machine",
}
# Context values each workload must end with (besides the initial {"n": i}).
EXPECTED_KEYS = {"linear": ("s1", "s2", "s3"), "human": ("s1", "approved", "s3")}


# --- shared by both sides (bench/_peer_local.py imports these) --------------------------------


def verified(instance: Any, completed: Any, i: int, keys: tuple[str, ...]) -> bool:
    """True if ``instance`` finished as ``completed`` with its own data and every step's value."""
    ctx = instance.context
    return instance.status == completed and ctx.get("n") == i and all(ctx.get(k) is True for k in keys)


async def measure(run_one: Callable[[int], Awaitable[bool]], n: int, warmup: int = WARMUP) -> dict[str, Any]:
    """Warm up, then time ``n`` sequential ``await run_one(i)`` calls (each returns verified-ness).

    ``run_one`` owns its workload's engine; the caller drops it afterwards, so the instances one
    workload's engine keeps do not add garbage-collector work to the next workload.
    """
    for i in range(warmup):
        with contextlib.suppress(Exception):  # failures are counted in the timed loop
            await run_one(-1 - i)
    gc.collect()
    ok, first_error = 0, None
    start = time.perf_counter()
    for i in range(n):
        try:
            ok += await run_one(i)
        except Exception as exc:  # a raising instance is a failed instance
            first_error = first_error or f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "verified": ok,
        "failed": n - ok,
        "first_error": first_error,
        "seconds": seconds,
        "per_second": ok / seconds,
    }


# --- Flowdeck (imported lazily: the engine may not exist yet) ---------------------------------


async def run_flowdeck(n: int) -> dict[str, Any]:
    from flowdeck_engine import (
        BaseHumanStep,
        BaseMachineStep,
        Edge,
        LocalExecutionEngine,
        WorkflowContext,
        WorkflowDefinition,
        WorkflowRegistry,
        WorkflowStatus,
    )

    class SetFlag(BaseMachineStep):
        async def execute(self, context: WorkflowContext) -> None:
            context.set(self.name, True)

    class S1(SetFlag):
        name = "s1"

    class S2(SetFlag):
        name = "s2"

    class S3(SetFlag):
        name = "s3"

    class Approve(BaseHumanStep):
        name = "approve"
        title = "Approve"
        form_schema = {"type": "object", "properties": {"approved": {"type": "boolean"}}}

    def engine_for(name: str, steps: list[Any]) -> Any:
        registry = WorkflowRegistry()
        registry.register_definition(
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
        return LocalExecutionEngine(registry)

    done, waiting = WorkflowStatus.COMPLETED, WorkflowStatus.WAITING

    def linear_runner() -> Callable[[int], Awaitable[bool]]:
        engine = engine_for("linear", [S1(), S2(), S3()])

        async def run_one(i: int) -> bool:
            instance = await engine.start_workflow("linear", initial_data={"n": i})
            return verified(instance, done, i, EXPECTED_KEYS["linear"])

        return run_one

    def human_runner() -> Callable[[int], Awaitable[bool]]:
        engine = engine_for("human", [S1(), Approve(), S3()])

        async def run_one(i: int) -> bool:
            instance = await engine.start_workflow("human", initial_data={"n": i})
            if instance.status != waiting:
                return False
            await engine.complete_human_task(
                instance_id=instance.id, step_name="approve", user_id="u1", data={"approved": True}
            )
            return verified(instance, done, i, EXPECTED_KEYS["human"])

        return run_one

    return {"linear": await measure(linear_runner(), n), "human": await measure(human_runner(), n)}


# --- peer (separate venv, separate process) ---------------------------------------------------


def peer_python() -> Path:
    """The peer venv's interpreter; creates the venv / installs the pinned peer when missing."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    dist_info = f"lib/python*/site-packages/{PEER_PACKAGE.replace('-', '_')}-{PEER_VERSION}.dist-info"
    if not any(PEER_VENV.glob(dist_info)):
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"{PEER_PACKAGE}=={PEER_VERSION}"], check=True, stdout=sys.stderr)
    return python


def run_peer(n: int) -> dict[str, Any]:
    cmd = [str(peer_python()), str(BENCH_DIR / "_peer_local.py"), "--n", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"peer benchmark failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


# --- driver -----------------------------------------------------------------------------------


def print_table(report: dict[str, Any]) -> None:
    def cell(value: float | None, fmt: str, suffix: str = "") -> str:
        return "-" if value is None else format(value, fmt) + suffix

    fd, peer = report["flowdeck"] or {}, report["peer"]
    print(
        f"In-process throughput, sequential, N={report['n']} per workload "
        f"(warm-up {report['warmup']}), Python {sys.version.split()[0]}"
    )
    print(f"{'workload':34}{'flowdeck/s':>12}{'peer/s':>12}{'ratio':>9}   failed flowdeck/peer")
    for key, label in WORKLOADS.items():
        f, p = fd.get(key, {}), peer["results"][key]
        print(
            f"{label:34}{cell(f.get('per_second'), ',.0f'):>12}{cell(p['per_second'], ',.0f'):>12}"
            f"{cell(report['ratio'].get(key), '.2f', 'x'):>9}   {cell(f.get('failed'), 'd')}/{p['failed']}"
        )
        for side, r in (("flowdeck", f), ("peer", p)):
            if r.get("first_error"):
                print(f"    {side} first error: {r['first_error']}")
    print(f"\nPeer {PEER_PACKAGE} {peer['version']}: worked around")
    for item in peer["workarounds"]:
        print(textwrap.fill(item, 100, initial_indent="  - ", subsequent_indent="    "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="timed instances per workload (default 2000)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    parser.add_argument("--peer-only", action="store_true", help="skip Flowdeck, run the peer only")
    args = parser.parse_args()

    flowdeck = None
    if not args.peer_only:
        try:
            flowdeck = asyncio.run(run_flowdeck(args.n))
        except ImportError as exc:
            sys.exit(f"flowdeck_engine is not importable ({exc}); try --peer-only")
    peer = run_peer(args.n)
    ratio = {
        key: flowdeck[key]["per_second"] / peer["results"][key]["per_second"]
        for key in WORKLOADS
        if flowdeck and peer["results"][key]["per_second"]
    }
    report = {"n": args.n, "warmup": WARMUP, "flowdeck": flowdeck, "peer": peer, "ratio": ratio}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    failed = [r["failed"] for side in (flowdeck or {}, peer["results"]) for r in side.values()]
    return 1 if any(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
