"""Property tests: random valid workflow graphs are all accepted (and round-trip); a single
mutation that breaks one rule is rejected with that rule's code, and only that code."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdeck_engine.documents import (
    DocumentLimits,
    Platform,
    WorkflowDocument,
    check_document,
    encode_document,
    export_document,
    load_definition,
    validate_document,
)
from flowdeck_engine.documents.structure import structure_problems

CONDITIONS = [
    "context.get('amount') > 100",
    "context.get('approved') == True",
    "context.get('region') in ['eu', 'us']",
    "not context.get('flag')",
    "context['order']['total'] >= 10 and context.get('n', 0) < 3",
]
DURATIONS = ["PT30S", "PT5M", "PT1H", "P1D", "P2DT3H", "PT0.5S"]
EXPRESSIONS = ["1", "context.get('amount', 0) * 2", "'text'", "[1, 2, 3]", "context.get('n', 0) + 1"]
KINDS = ["set", "emit", "human", "gateway", "inclusive", "timer", "until", "webhook", "external", "http"]

settings.register_profile("documents", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def step(draw: Any, name: str, kind: str) -> dict[str, Any]:
    pick = draw
    if kind == "set":
        values = pick(st.dictionaries(st.sampled_from(["a", "b", "total"]), st.sampled_from(EXPRESSIONS), min_size=1))
        spec: dict[str, Any] = {"name": name, "kind": "machine", "action": {"type": "set", "values": values}}
        if pick(st.booleans()):
            errors = sorted(pick(st.sets(st.sampled_from(["KeyError", "ValueError"]))))
            spec["retry"] = {
                "max_attempts": pick(st.integers(1, 5)),
                "initial_interval": pick(st.sampled_from(DURATIONS)),
            }
            if errors:
                spec["retry"]["non_retryable_errors"] = errors
        return spec
    if kind == "emit":
        payload = pick(st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from(EXPRESSIONS)))
        return {"name": name, "kind": "machine", "action": {"type": "emit", "event": "evt.done", "payload": payload}}
    if kind == "http":
        action = {"type": "http", "url": "https://api.example.com/v1/x", "body": {"id": "/id"}, "result_path": "/r"}
        return {"name": name, "kind": "machine", "action": action, "timeout": pick(st.sampled_from(DURATIONS))}
    if kind == "external":
        return {
            "name": name,
            "kind": "machine",
            "action": {"type": "external", "job_type": "crm.sync", "result_key": "crm"},
        }
    if kind == "human":
        spec = {"name": name, "kind": "human", "title": "Do it", "candidate_groups": ["team"]}
        if pick(st.booleans()):
            spec["form"] = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
        if pick(st.booleans()):
            spec["assignee_expression"] = "context.get('manager_id')"
        if pick(st.booleans()):
            spec["due"] = pick(st.sampled_from(DURATIONS))
            spec["escalation"] = {"after": pick(st.sampled_from(DURATIONS)), "reassign_to": ["leads"]}
        return spec
    if kind in ("gateway", "inclusive"):
        return {"name": name, "kind": "gateway"} | ({"mode": "inclusive"} if kind == "inclusive" else {})
    if kind == "timer":
        return {"name": name, "kind": "timer", "duration": pick(st.sampled_from(DURATIONS))}
    if kind == "until":
        return {"name": name, "kind": "timer", "until": "context.get('deadline')"}
    return {"name": name, "kind": "webhook", "timeout": pick(st.sampled_from(DURATIONS)), "result_key": "payload"}


@st.composite
def valid_documents(draw: Any) -> dict[str, Any]:
    """A random valid document: a DAG in which every step is reached from the first and reaches
    the last (the only terminal step), plus loops back with conditions."""
    n = draw(st.integers(2, 14))
    names = [f"s{i}" for i in range(n)]
    kinds = ["set", *draw(st.lists(st.sampled_from(KINDS), min_size=n - 2, max_size=n - 2)), "emit"]
    out: dict[int, list[int]] = {i: [] for i in range(n)}
    for i in range(1, n):
        out[draw(st.integers(0, i - 1))].append(i)
    for i in range(n - 1):
        if not out[i]:
            out[i].append(draw(st.integers(i + 1, n - 1)))
        for j in draw(st.lists(st.integers(i + 1, n - 1), max_size=2)):
            if j not in out[i]:
                out[i].append(j)
    edges: list[dict[str, Any]] = []
    for i in range(n - 1):
        gateway = kinds[i] in ("gateway", "inclusive")
        for k, j in enumerate(out[i]):
            edge: dict[str, Any] = {"source": names[i], "target": names[j]}
            if gateway and k == len(out[i]) - 1:
                edge["default"] = True
            elif gateway or draw(st.integers(0, 4)) == 0:
                edge["condition"] = draw(st.sampled_from(CONDITIONS))
            edges.append(edge)
        if i > 0 and not gateway and draw(st.integers(0, 5)) == 0:  # a loop back, with its exit kept
            edges.append(
                {"source": names[i], "target": names[draw(st.integers(0, i))], "condition": "context.get('n', 0) < 3"}
            )
    return {
        "format": "flowdeck.workflow/v1",
        "name": "generated",
        "version": draw(st.sampled_from(["1.0.0", "0.3.12", "2.0.0-rc.1"])),
        "description": draw(st.sampled_from(["", "Generated."])),
        "initial_step": names[0],
        "terminal_steps": [names[-1]],
        "steps": [step(draw, name, kind) for name, kind in zip(names, kinds, strict=True)],
        "edges": edges,
    }


@settings(settings.get_profile("documents"))
@given(valid_documents())
def test_valid_graphs_are_accepted_and_round_trip(doc: dict[str, Any]) -> None:
    assert check_document(json.dumps(doc)) == []
    document = msgspec.convert(doc, WorkflowDocument)
    assert export_document(load_definition(doc)) == document
    assert validate_document(encode_document(document, "yaml"), syntax="yaml") == document


def _insert(doc: dict[str, Any], spec: dict[str, Any]) -> None:
    """Put ``spec`` between the first and the last step, on a new branch."""
    first, last = doc["steps"][0]["name"], doc["steps"][-1]["name"]
    doc["steps"].insert(1, spec)
    doc["edges"] += [{"source": first, "target": spec["name"]}, {"source": spec["name"], "target": last}]


def _non_default_edge(doc: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in doc["edges"] if not e.get("default"))


def _deep(levels: int) -> dict[str, Any]:
    form: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        form = {"type": "object", "properties": {"x": form}}
    return form


SET = {"kind": "machine", "action": {"type": "set", "values": {"x": "1"}}}
MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "initial.unknown": lambda d: d.update(initial_step="nowhere"),
    "initial.missing": lambda d: d.pop("initial_step"),
    "step.duplicate_name": lambda d: d["steps"].append(copy.deepcopy(d["steps"][-1])),
    "edge.unknown_target": lambda d: d["edges"].append({"source": d["initial_step"], "target": "ghost"}),
    "edge.unknown_source": lambda d: d["edges"].append({"source": "ghost", "target": d["terminal_steps"][0]}),
    "step.unreachable": lambda d: (d["steps"].append({"name": "orphan", **SET}), d["terminal_steps"].append("orphan")),
    "step.no_exit": lambda d: (
        d["steps"].append({"name": "trap", **SET}),
        d["edges"].append({"source": d["initial_step"], "target": "trap"}),
        d["edges"].append({"source": "trap", "target": "trap", "condition": "True"}),
    ),
    "step.dead_end": lambda d: (
        d["steps"].append({"name": "stuck", **SET}),
        d["edges"].append({"source": d["initial_step"], "target": "stuck"}),
    ),
    "terminal.has_edges": lambda d: d["edges"].append({"source": d["terminal_steps"][0], "target": d["initial_step"]}),
    "condition.invalid": lambda d: _non_default_edge(d).update(condition="__import__('os')"),
    "expression.invalid": lambda d: d["steps"][0]["action"]["values"].update(a="context.pop('a')"),
    "form.invalid": lambda d: _insert(
        d, {"name": "ask", "kind": "human", "candidate_groups": ["g"], "form": {"type": 5}}
    ),
    "duration.invalid": lambda d: _insert(d, {"name": "wait", "kind": "timer", "duration": "P1Y"}),
    "timer.invalid": lambda d: _insert(d, {"name": "wait", "kind": "timer"}),
    "gateway.no_default": lambda d: _insert(d, {"name": "route", "kind": "gateway"}),
    "type.invalid": lambda d: d["steps"][-1].update(description=42),
    "field.unknown": lambda d: d["steps"][-1].update(colour="red"),
    "kind.unknown": lambda d: d["steps"][-1].update(kind="script"),
    "value.not_finite": lambda d: d["steps"][0].update(retry={"max_attempts": 2, "backoff_coefficient": float("nan")}),
    "value.nul": lambda d: d.update(description="bad\x00"),
    "limit.depth": lambda d: _insert(d, {"name": "ask", "kind": "human", "candidate_groups": ["g"], "form": _deep(20)}),
    "format.unsupported": lambda d: d.update(format="flowdeck.workflow/v0"),
}


@pytest.mark.parametrize("code", sorted(MUTATIONS))
@settings(settings.get_profile("documents"), max_examples=15)
@given(doc=valid_documents())
def test_one_broken_rule_is_rejected_with_its_code(doc: dict[str, Any], code: str) -> None:
    MUTATIONS[code](doc)
    assert {p.code for p in check_document(doc)} == {code}


@settings(settings.get_profile("documents"))
@given(valid_documents())
def test_limits_are_rejected_with_their_code(doc: dict[str, Any]) -> None:
    steps, edges = len(doc["steps"]), len(doc["edges"])
    tight = Platform(limits=DocumentLimits(max_steps=steps - 1, max_edges=edges))
    assert {p.code for p in check_document(doc, platform=tight)} == {"limit.steps"}
    tight = Platform(limits=DocumentLimits(max_edges=edges - 1))
    assert {p.code for p in check_document(doc, platform=tight)} == {"limit.edges"}
    size = len(json.dumps(doc).encode())
    tight = Platform(limits=DocumentLimits(max_bytes=size - 1))
    assert {p.code for p in check_document(json.dumps(doc), platform=tight)} == {"limit.bytes"}


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**65), 2**65),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["", "x", "s0", "machine", "set", "gateway", "exclusive", "P1D", "P1Y", "1.0.0", "/a"]),
        st.text(max_size=5),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["type", "name", "x"]), inner),
    max_leaves=6,
)


@settings(settings.get_profile("documents"), max_examples=300)
@given(doc=valid_documents(), data=st.data())
def test_a_tree_msgspec_converts_has_no_structural_problem(doc: dict[str, Any], data: st.DataObject) -> None:
    """Validation skips the structure check when msgspec converts the tree: msgspec must refuse
    every tree in which the structure check finds a problem."""
    for _ in range(data.draw(st.integers(1, 3))):
        node: Any = doc
        while True:  # walk down to a random container, then break one of its values
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = data.draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and data.draw(st.integers(0, 3)):
                node = child
                continue
            action = data.draw(st.integers(0, 3))
            if action == 0 and isinstance(node, dict):
                del node[key]
            elif action == 1 and isinstance(node, dict):
                node[data.draw(st.sampled_from(["colour", "mode", "form", "retry", "default", "kind"]))] = child
            else:
                node[key] = data.draw(JSON_VALUES)
            break
    try:
        msgspec.convert(doc, WorkflowDocument)
    except msgspec.ValidationError:
        return
    assert structure_problems(doc, WorkflowDocument) == []
