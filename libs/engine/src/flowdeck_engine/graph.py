"""The graph view of a definition: navigation, validation and Mermaid rendering."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowdeck_engine.conditions import compile_condition
from flowdeck_engine.enums import StepType
from flowdeck_engine.exceptions import ConditionSyntaxError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

    from flowdeck_engine.definition import Edge, WorkflowDefinition


@dataclass(frozen=True, slots=True)
class GraphProblem:
    """One thing wrong with a definition: a stable ``code``, a message, and where (a path)."""

    code: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.code}]" if self.path else f"{self.message} [{self.code}]"


_SHAPES = {
    StepType.MACHINE: ("[", "]"),
    StepType.HUMAN: ("[/", "/]"),
    StepType.GATEWAY: ("{", "}"),
    StepType.TIMER: ("((", "))"),
    StepType.WEBHOOK: ("[[", "]]"),
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _node_id(name: str) -> str:
    return "s_" + _UNSAFE.sub(lambda m: f"_{ord(m.group()):x}_", name)


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


class WorkflowGraph:
    """Successors, predecessors, validation and Mermaid text of a :class:`WorkflowDefinition`."""

    def __init__(self, definition: WorkflowDefinition) -> None:
        self.definition = definition
        self._out: dict[str, list[Edge]] = {name: [] for name in definition.steps}
        self._in: dict[str, list[Edge]] = {name: [] for name in definition.steps}
        for edge in definition.edges:
            self._out.setdefault(edge.source, []).append(edge)
            self._in.setdefault(edge.target, []).append(edge)

    def edges_from(self, step: str) -> list[Edge]:
        """Outgoing edges of ``step``, in definition order."""
        return list(self._out.get(step, ()))

    def edges_to(self, step: str) -> list[Edge]:
        """Incoming edges of ``step``, in definition order."""
        return list(self._in.get(step, ()))

    def successors(self, step: str) -> list[str]:
        """Names of the steps ``step`` has edges to."""
        return [edge.target for edge in self._out.get(step, ())]

    def predecessors(self, step: str) -> list[str]:
        """Names of the steps that have edges to ``step``."""
        return [edge.source for edge in self._in.get(step, ())]

    def reachable_from(self, start: str) -> set[str]:
        """Every step reachable from ``start`` (``start`` included)."""
        return _walk([start], self.successors)

    def back_edges(self) -> set[int]:
        """Indexes (in ``definition.edges``) of the edges that close a cycle.

        Found by a depth-first walk from the initial step in edge order. A step waits for its
        other incoming edges (a join) only on forward edges; a back edge re-activates it.
        """
        index = {id(edge): i for i, edge in enumerate(self.definition.edges)}
        back: set[int] = set()
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        start = self.definition.initial_step
        if start not in self._out:
            return back
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, i = stack[-1]
            edges = self._out.get(node, [])
            if i == len(edges):
                stack.pop()
                state[node] = 2
                continue
            stack[-1] = (node, i + 1)
            edge = edges[i]
            seen = state.get(edge.target)
            if seen == 1:
                back.add(index[id(edge)])
            elif seen is None and edge.target in self._out:
                state[edge.target] = 1
                stack.append((edge.target, 0))
        return back

    def validate(self) -> list[GraphProblem]:
        """Every structural problem of the definition (an empty list when it is sound)."""
        d = self.definition
        problems: list[GraphProblem] = []
        add = problems.append
        if not d.name:
            add(GraphProblem("definition.name_missing", "the workflow has no name", "name"))
        if not d.steps:
            add(GraphProblem("definition.no_steps", "the workflow has no steps", "steps"))
        for key, step in d.steps.items():
            if step.name and step.name != key:
                add(GraphProblem("step.name_mismatch", f"step {key!r} is named {step.name!r}", f"steps/{key}"))
        if not d.initial_step:
            add(GraphProblem("initial.missing", "no initial step", "initial_step"))
        elif d.initial_step not in d.steps:
            add(GraphProblem("initial.unknown", f"initial step {d.initial_step!r} is not a step", "initial_step"))
        if not d.terminal_steps:
            add(GraphProblem("terminal.missing", "no terminal step", "terminal_steps"))
        for name in sorted(d.terminal_steps - d.steps.keys()):
            add(GraphProblem("terminal.unknown", f"terminal step {name!r} is not a step", "terminal_steps"))
        for i, edge in enumerate(d.edges):
            for end, name in (("source", edge.source), ("target", edge.target)):
                if name not in d.steps:
                    add(GraphProblem(f"edge.unknown_{end}", f"edge {end} {name!r} is not a step", f"edges/{i}/{end}"))
            if isinstance(edge.condition, str):
                problems.extend(_condition_problems(edge.condition, f"edges/{i}/condition"))
        problems.extend(self._flow_problems())
        return problems

    def _flow_problems(self) -> list[GraphProblem]:
        d = self.definition
        problems: list[GraphProblem] = []
        for name in sorted(d.terminal_steps & d.steps.keys()):
            if self._out.get(name):
                problems.append(
                    GraphProblem("terminal.has_edges", f"terminal step {name!r} has outgoing edges", f"steps/{name}")
                )
        for i, edge in enumerate(d.edges):
            source = d.steps.get(edge.source)
            if edge.on_timeout and source is not None and not _can_time_out(source):
                problems.append(
                    GraphProblem(
                        "edge.timeout_without_deadline",
                        f"on_timeout edge from {edge.source!r}, which has no escalation or timeout",
                        f"edges/{i}",
                    )
                )
        for name, step in d.steps.items():
            escalation = getattr(step, "escalation", None)
            if escalation is not None and not escalation.reassign_to and not any(e.on_timeout for e in self._out[name]):
                problems.append(
                    GraphProblem(
                        "step.escalation_without_edge",
                        f"step {name!r} escalates to its on_timeout edge but has none",
                        f"steps/{name}",
                    )
                )
        for name, edges in self._out.items():
            if name in d.steps and not any(not e.on_timeout for e in edges) and name not in d.terminal_steps:
                problems.append(
                    GraphProblem(
                        "step.dead_end",
                        f"step {name!r} has no outgoing edges and is not terminal",
                        f"steps/{name}",
                    )
                )
            if sum(1 for edge in edges if edge.default) > 1:
                problems.append(
                    GraphProblem("edge.many_defaults", f"step {name!r} has more than one default edge", f"steps/{name}")
                )
        if d.initial_step in d.steps:
            reachable = self.reachable_from(d.initial_step)
            for name in d.steps:
                if name not in reachable:
                    problems.append(
                        GraphProblem(
                            "step.unreachable",
                            f"step {name!r} is unreachable from the initial step",
                            f"steps/{name}",
                        )
                    )
            finishing = _walk(d.terminal_steps & d.steps.keys(), self.predecessors)
            for name in d.steps:
                if name in reachable and name not in finishing and self._out.get(name):
                    problems.append(
                        GraphProblem(
                            "step.no_exit",
                            f"no terminal step can be reached from step {name!r}",
                            f"steps/{name}",
                        )
                    )
        return problems

    def to_mermaid(self) -> str:
        """The definition as a Mermaid flowchart."""
        return self.to_mermaid_with_state()

    def to_mermaid_with_state(
        self,
        current_steps: Collection[str] = (),
        completed_steps: Collection[str] = (),
        failed_steps: Collection[str] = (),
    ) -> str:
        """The definition as a Mermaid flowchart with a live instance's steps marked."""
        d = self.definition
        lines = ["flowchart TD"]
        for name, step in d.steps.items():
            left, right = _SHAPES.get(step.step_type, ("[", "]"))
            lines.append(f"    {_node_id(name)}{left}{_label(name)}{right}")
        for edge in d.edges:
            arrow = "-.->" if edge.default or edge.on_timeout else "-->"
            label = edge.condition if isinstance(edge.condition, str) else ("condition" if edge.condition else None)
            if edge.on_timeout:
                label = f"on timeout: {label}" if label else "on timeout"
            text = f"|{_label(label)}|" if label else ""
            lines.append(f"    {_node_id(edge.source)} {arrow}{text} {_node_id(edge.target)}")
        marks = (
            ("completed", completed_steps, "fill:#d4edda,stroke:#28a745"),
            ("current", current_steps, "fill:#fff3cd,stroke:#ffc107,stroke-width:3px"),
            ("failed", failed_steps, "fill:#f8d7da,stroke:#dc3545"),
        )
        for cls, names, style in marks:
            known = [_node_id(n) for n in names if n in d.steps]
            if known:
                lines.append(f"    classDef {cls} {style}")
                lines.append(f"    class {','.join(known)} {cls}")
        return "\n".join(lines)


def _walk(start: Iterable[str], neighbours: Callable[[str], list[str]]) -> set[str]:
    seen = set(start)
    todo = list(seen)
    while todo:
        for nxt in neighbours(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _can_time_out(step: object) -> bool:
    if getattr(step, "escalation", None) is not None:
        return True
    return bool(getattr(step, "awaits_callback", False) and getattr(step, "timeout", None))


def _condition_problems(source: str, path: str) -> list[GraphProblem]:
    try:
        compile_condition(source)
    except ConditionSyntaxError as exc:
        return [GraphProblem("condition.invalid", exc.reason, path)]
    return []
