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

``--instructions`` counts instead of timing: each side runs each workload in a process of its
own under valgrind's callgrind, once with N instances and once with none (the same start-up and
warm-up), and the difference over N is the instructions one instance costs. The count does not
move with the host's load and clock, which on a shared 2-core machine move the peer's time alone
by a third from one run to the next; it leaves out what instructions do not show (cache misses,
the garbage collector's memory walks), so it is a proxy for the timed ratio, not a substitute.

Run: ``make bench`` or ``.venv/bin/python bench/engine_local.py [--n N] [--json] [--peer-only]
[--workload linear|human] [--instructions]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import re
import shutil
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


async def run_flowdeck(n: int, workloads: list[str]) -> dict[str, Any]:
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

    runners = {"linear": linear_runner, "human": human_runner}
    return {key: await measure(runners[key](), n) for key in workloads}


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


def peer_command() -> list[str]:
    return [str(peer_python()), str(BENCH_DIR / "_peer_local.py")]


def run_peer(n: int, workloads: list[str]) -> dict[str, Any]:
    cmd = [*peer_command(), "--n", str(n), "--workload", *workloads]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"peer benchmark failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


# --- instructions -----------------------------------------------------------------------------


def instructions(cmd: list[str]) -> int:
    """The instructions ``cmd`` executes, counted by valgrind's callgrind."""
    run = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
    proc = subprocess.run(run, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        sys.exit(f"{' '.join(cmd)} failed under valgrind ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def count_instructions(n: int, workloads: list[str]) -> dict[str, dict[str, float]]:
    """Instructions per instance, by workload and side: a run of ``n`` minus a run of none."""
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    sides = {"flowdeck": [sys.executable, __file__, "--flowdeck-only", "--json"], "peer": peer_command()}
    counts: dict[str, dict[str, float]] = {}
    for key in workloads:
        for side, cmd in sides.items():
            none, some = (instructions([*cmd, "--workload", key, "--n", str(k)]) for k in (0, n))
            counts.setdefault(key, {})[side] = (some - none) / n
    return counts


def print_instructions(n: int, counts: dict[str, dict[str, float]]) -> None:
    print(f"Instructions per instance (valgrind callgrind, N={n} minus N=0), Python {sys.version.split()[0]}")
    print(f"{'workload':34}{'flowdeck':>12}{'peer':>12}{'peer/flowdeck':>15}")
    for key, sides in counts.items():
        fd, peer = sides["flowdeck"], sides["peer"]
        print(f"{WORKLOADS[key]:34}{fd:>12,.0f}{peer:>12,.0f}{peer / fd:>14.2f}x")


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
    for key, p in peer["results"].items():
        label, f = WORKLOADS[key], fd.get(key, {})
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
    parser.add_argument("--flowdeck-only", action="store_true", help="skip the peer, run Flowdeck only")
    parser.add_argument("--workload", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--instructions", action="store_true", help="count instructions instead of timing")
    args = parser.parse_args()
    if args.instructions:
        print_instructions(args.n, count_instructions(args.n, args.workload))
        return 0

    flowdeck = None
    if not args.peer_only:
        try:
            flowdeck = asyncio.run(run_flowdeck(args.n, args.workload))
        except ImportError as exc:
            sys.exit(f"flowdeck_engine is not importable ({exc}); try --peer-only")
    if args.flowdeck_only:
        print(json.dumps({"n": args.n, "flowdeck": flowdeck}))
        return 0
    peer = run_peer(args.n, args.workload)
    ratio = {
        key: flowdeck[key]["per_second"] / peer["results"][key]["per_second"]
        for key in args.workload
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
