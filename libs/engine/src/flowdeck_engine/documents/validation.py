"""Checking documents and compiling them to :class:`~flowdeck_engine.WorkflowDefinition`.

Every problem is reported at once, each with a stable code and a JSON pointer, in document order;
nothing but :class:`DocumentError` escapes. The checks run in this order, each on what the
previous ones let through: the text (size, syntax, NUL characters); the tree as JSON (depth,
non-finite numbers, keys given twice, ...); step and edge counts; the structure (types, unknown and
missing fields, patterns: msgspec converts a sound tree at once, and the structure check that
reports each problem only runs on a tree it refuses); each step (expressions, durations, forms,
actions); the graph
(:meth:`WorkflowGraph.validate`, with its paths turned into pointers). A graph problem at a place
the structure check already reported is left out, and so are reachability problems when an edge
is too broken to place in the graph.
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from flowdeck_engine.definition import Edge, WorkflowDefinition
from flowdeck_engine.documents.actions import Platform
from flowdeck_engine.documents.compiler import StepCompiler
from flowdeck_engine.documents.errors import DocumentError, DocumentProblem
from flowdeck_engine.documents.model import StepSpec, WorkflowDocument
from flowdeck_engine.documents.source import parse_text
from flowdeck_engine.documents.structure import structure_problems
from flowdeck_engine.documents.tree import tree_problems
from flowdeck_engine.enums import GatewayMode
from flowdeck_engine.steps import BaseMachineStep, GatewayStep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowdeck_engine.documents.limits import DocumentLimits
    from flowdeck_engine.documents.source import Syntax
    from flowdeck_engine.graph import GraphProblem

_DIGITS = re.compile(r"\d+")
_FLOW = frozenset({"step.unreachable", "step.no_exit", "step.dead_end"})
_FATAL: Any = object()


def check_document(
    source: bytes | str | Mapping[str, Any], *, syntax: Syntax = "json", platform: Platform | None = None
) -> list[DocumentProblem]:
    """Every problem of a document (an empty list when it is valid).

    ``source`` is the document's text in ``syntax``, or the document already parsed (then keys
    given twice cannot be seen: pass the text when you have it). ``platform`` holds the limits,
    the platform actions and the HTTP policy (the defaults when None: platform action names are
    then not checked).
    """
    return _build(source, syntax, platform or Platform()).problems


def validate_document(
    source: bytes | str | Mapping[str, Any], *, syntax: Syntax = "json", platform: Platform | None = None
) -> WorkflowDocument:
    """The valid document; raises :class:`DocumentError` listing every problem otherwise."""
    result = _build(source, syntax, platform or Platform())
    if result.document is None:
        raise DocumentError(result.problems)
    return result.document


def load_definition(
    source: bytes | str | Mapping[str, Any], *, syntax: Syntax = "json", platform: Platform | None = None
) -> WorkflowDefinition:
    """The :class:`WorkflowDefinition` of a valid document; raises :class:`DocumentError` listing
    every problem otherwise."""
    result = _build(source, syntax, platform or Platform())
    if result.definition is None:
        raise DocumentError(result.problems)
    return result.definition


def load_document(
    source: bytes | str | Mapping[str, Any], *, syntax: Syntax = "json", platform: Platform | None = None
) -> tuple[WorkflowDocument, WorkflowDefinition]:
    """The valid document and its :class:`WorkflowDefinition`, from one pass (what an upload needs:
    the document to store, the definition to register); raises :class:`DocumentError`."""
    result = _build(source, syntax, platform or Platform())
    if result.document is None or result.definition is None:
        raise DocumentError(result.problems)
    return result.document, result.definition


def compile_document(document: WorkflowDocument, platform: Platform | None = None) -> WorkflowDefinition:
    """The :class:`WorkflowDefinition` of a document held as Structs (checked in full again, as a
    Struct built in Python skips msgspec's checks); raises :class:`DocumentError`."""
    return load_definition(msgspec.to_builtins(document), platform=platform)


@dataclass(slots=True)
class _Result:
    problems: list[DocumentProblem]
    document: WorkflowDocument | None = None
    definition: WorkflowDefinition | None = None


class _Unchecked(BaseMachineStep):
    """Stands in for a step too broken to compile, so that the graph checks still see its edges."""

    awaits_callback: ClassVar[bool] = True  # its on_timeout edges are not reported again
    timeout = timedelta(seconds=1)


def _build(source: bytes | str | Mapping[str, Any], syntax: Syntax, platform: Platform) -> _Result:
    """Every check and the compile, with the cyclic garbage collector paused meanwhile.

    A document at the limits makes some 100,000 short-lived objects (its tree, the conditions'
    syntax trees and closures, the Structs): each few hundred of them start a collection, and
    those collections walk the whole heap now and then. That took as long as the checks
    themselves. What the checks make holds no reference cycles, so reference counting frees it
    as usual; the collector resumes at the end (unless something else had paused it).
    """
    if not gc.isenabled():
        return _checked(source, syntax, platform)
    gc.disable()
    try:
        return _checked(source, syntax, platform)
    finally:
        gc.enable()


def _checked(source: bytes | str | Mapping[str, Any], syntax: Syntax, platform: Platform) -> _Result:
    limits = platform.limits
    tree, problems = _read(source, syntax, limits)
    if tree is _FATAL:
        return _Result(problems)
    steps_raw, edges_raw = _items(tree.get("steps")), _items(tree.get("edges"))
    for what, items, limit in (("steps", steps_raw, limits.max_steps), ("edges", edges_raw, limits.max_edges)):
        if len(items) > limit:
            problems.append(DocumentProblem(f"limit.{what}", f"{len(items)} {what}; the limit is {limit}", f"/{what}"))
    # msgspec converts a sound tree in a fraction of the structure check's time, and refuses
    # everything that check reports: only a tree it refuses needs the check (for every problem).
    document = _converted(tree) if not problems else None
    structural: list[DocumentProblem] = []
    if document is None:
        seen = {p.pointer for p in problems}
        structural = [p for p in structure_problems(tree, WorkflowDocument) if p.pointer not in seen]
        problems += structural
    broken = {_element(p.pointer) for p in problems}
    compiler = StepCompiler(platform)
    steps, index = _steps(steps_raw, None if document is None else document.steps, broken, compiler, problems)
    edges, edge_index = _edges(edges_raw, broken, problems)
    terminal = _terminal(tree.get("terminal_steps"), problems)
    definition = WorkflowDefinition(
        name=_text(tree.get("name")),
        version=_text(tree.get("version")),
        description=_text(tree.get("description")),
        steps=steps,
        edges=edges,
        initial_step=_text(tree.get("initial_step")),
        terminal_steps=set(terminal),
    )
    reported = {p.pointer for p in structural}
    for problem in _graph_problems(definition, index, edge_index, terminal, complete=len(edges) == len(edges_raw)):
        if not any(at in reported for at in _ancestors(problem.pointer)):
            problems.append(problem)
    problems += compiler.problems
    if problems:
        problems.sort(key=_order)
        return _Result(problems)
    if document is None:
        try:
            document = msgspec.convert(tree, WorkflowDocument)
        except msgspec.ValidationError as exc:  # pragma: no cover - the structure check covers msgspec's
            return _Result([DocumentProblem("type.invalid", str(exc))])
    return _Result([], document, definition)


def _converted(tree: dict[str, Any]) -> WorkflowDocument | None:
    """The document as Structs, or None when msgspec refuses the tree."""
    try:
        return msgspec.convert(tree, WorkflowDocument)
    except msgspec.ValidationError:
        return None


def _read(
    source: bytes | str | Mapping[str, Any], syntax: Syntax, limits: DocumentLimits
) -> tuple[Any, list[DocumentProblem]]:
    """The parsed document and the problems of its text and tree; the tree is ``_FATAL`` when
    nothing more can be checked."""
    if isinstance(source, (bytes, str)):
        tree, problems = parse_text(source, syntax, limits)
    else:
        tree, problems = source, _size_problems(source, limits.max_bytes)
    if problems:
        return _FATAL, problems
    problems = tree_problems(tree, limits)
    if any(p.code == "value.repeated" for p in problems):
        return _FATAL, problems
    if not isinstance(tree, dict):
        return _FATAL, [*problems, DocumentProblem("type.invalid", "a document is an object (a mapping)")]
    return tree, problems


def _graph_problems(
    definition: WorkflowDefinition,
    index: dict[str, int],
    edge_index: list[int],
    terminal: dict[str, int],
    *,
    complete: bool,
) -> list[DocumentProblem]:
    """The engine's graph problems as document problems, and the gateways without a default edge.

    When some edge could not be placed in the graph (``complete`` False), reachability is not judged.
    """
    graph = definition.get_graph()
    problems: list[DocumentProblem] = []
    for name, step in definition.steps.items():
        exclusive = isinstance(step, GatewayStep) and step.mode is GatewayMode.EXCLUSIVE
        if exclusive and not any(edge.default for edge in graph.edges_from(name)):
            message = f"exclusive gateway {name!r} needs a default edge (taken when no condition holds)"
            problems.append(DocumentProblem("gateway.no_default", message, f"/steps/{index[name]}"))
    for problem in graph.validate():
        if complete or problem.code not in _FLOW:
            problems.append(_graph_problem(problem, index, edge_index, terminal))
    return problems


def _size_problems(tree: Mapping[str, Any], max_bytes: int) -> list[DocumentProblem]:
    try:
        size = len(msgspec.json.encode(tree))
    except Exception:  # not JSON at all: the tree check says where
        return []
    if size > max_bytes:
        return [DocumentProblem("limit.bytes", f"the document is {size} bytes as JSON; the limit is {max_bytes}")]
    return []


def _steps(
    raw: list[Any],
    specs: list[StepSpec] | None,
    broken: set[str],
    compiler: StepCompiler,
    problems: list[DocumentProblem],
) -> tuple[dict[str, Any], dict[str, int]]:
    """The engine steps by name, and where each name is first used; ``specs`` are the steps
    already converted (one for each item of ``raw``), when the whole document could be."""
    # Any, not Step: mypy does not take BaseStep (step_type a ClassVar) for the Step protocol
    steps: dict[str, Any] = {}
    index: dict[str, int] = {}
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if type(name) is not str:
            continue
        pointer = f"/steps/{i}"
        if name in index:
            message = f"step name {name!r} is already used by step {index[name]}"
            problems.append(DocumentProblem("step.duplicate_name", message, f"{pointer}/name"))
            continue
        index[name] = i
        if pointer in broken:
            steps[name] = _Unchecked(name)
            continue
        if specs is not None:
            steps[name] = compiler.step(specs[i], pointer)
            continue
        try:
            spec: Any = msgspec.convert(item, StepSpec)
        except msgspec.ValidationError as exc:  # pragma: no cover - the structure check covers msgspec's
            problems.append(DocumentProblem("type.invalid", str(exc), pointer))
            steps[name] = _Unchecked(name)
            continue
        steps[name] = compiler.step(spec, pointer)
    return steps, index


def _edges(raw: list[Any], broken: set[str], problems: list[DocumentProblem]) -> tuple[list[Edge], list[int]]:
    edges: list[Edge] = []
    positions: list[int] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            continue
        source: Any = item.get("source")
        target: Any = item.get("target")
        pointer = f"/edges/{i}"
        if pointer in broken:
            if type(source) is str and type(target) is str:
                edges.append(Edge(source, target))
                positions.append(i)
            continue
        condition = item.get("condition")
        default, on_timeout = item.get("default", False), item.get("on_timeout", False)
        if default and condition is not None:
            message = "a default edge is taken when no other edge applies: it has no condition"
            problems.append(DocumentProblem("edge.default_with_condition", message, f"{pointer}/condition"))
        edges.append(Edge(source, target, condition, default=default, on_timeout=on_timeout))
        positions.append(i)
    return edges, positions


def _terminal(raw: Any, problems: list[DocumentProblem]) -> dict[str, int]:
    """Terminal step names and where each is first listed."""
    names: dict[str, int] = {}
    for i, name in enumerate(raw if type(raw) is list else []):
        if type(name) is not str:
            continue
        if name in names:
            message = f"terminal step {name!r} is listed twice"
            problems.append(DocumentProblem("terminal.duplicate", message, f"/terminal_steps/{i}"))
        else:
            names[name] = i
    return names


def _graph_problem(
    problem: GraphProblem, index: dict[str, int], edge_index: list[int], terminal: dict[str, int]
) -> DocumentProblem:
    """The engine's problem with its path (``steps/<name>``, ``edges/<i>/...``) as a pointer."""
    path = problem.path
    if path.startswith("steps/") and path[6:] in index:
        pointer = f"/steps/{index[path[6:]]}"
    elif path.startswith("edges/"):
        _, position, *rest = path.split("/")
        pointer = "/".join(["", "edges", str(edge_index[int(position)]), *rest])
    elif problem.code == "terminal.unknown":
        at = [i for name, i in terminal.items() if name not in index and repr(name) in problem.message]
        pointer = f"/terminal_steps/{at[0]}" if at else "/terminal_steps"
    else:
        pointer = f"/{path}" if path else ""
    return DocumentProblem(problem.code, problem.message, pointer)


def _items(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _text(value: Any) -> str:
    return value if type(value) is str else ""


def _element(pointer: str) -> str:
    """The step or edge a pointer is in (``/steps/3/form/type`` -> ``/steps/3``)."""
    return "/".join(pointer.split("/", 3)[:3])


def _ancestors(pointer: str) -> list[str]:
    """``pointer`` and the pointers above it, the root excluded."""
    parts = pointer.split("/")
    return ["/".join(parts[:n]) for n in range(2, len(parts) + 1)]


def _order(problem: DocumentProblem) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, int(t), "") if _DIGITS.fullmatch(t) else (1, 0, t) for t in problem.pointer.split("/")[1:])
