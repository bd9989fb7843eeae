"""The corpus of invalid documents: each file breaks one rule and is rejected with that rule's
code and pointer (the table below), never with an exception of another kind."""

from __future__ import annotations

import gc
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowdeck_engine.documents import (
    PROBLEM_CODES,
    ActionRegistry,
    DocumentError,
    DocumentLimits,
    Platform,
    check_document,
    load_definition,
    syntax_for,
    validate_document,
    validation,
)

from .conftest import INVALID, MINIMAL, minimal

DEEP = "/steps/1/form" + "/properties/x" * 14 + "/properties"  # the container at depth 33

EXPECTED: dict[str, list[tuple[str, str]]] = {
    "alias.yaml": [("document.yaml_alias", "/steps/1/description")],
    "assignee-conflict.yaml": [("human.assignee_conflict", "/steps/1/assignee")],
    "assignee-expression-invalid.yaml": [("expression.invalid", "/steps/1/assignee_expression")],
    "bad-context-path.yaml": [("path.invalid", "/steps/0/action/body/id")],
    "bad-duration.yaml": [("duration.invalid", "/steps/1/due")],
    "bad-step-name.yaml": [("name.invalid", "/steps/2/name")],
    "binary-tag.yaml": [("value.not_json", "/description")],
    "condition-syntax.yaml": [("condition.invalid", "/edges/1/condition")],
    "condition-too-deep.yaml": [("condition.invalid", "/edges/1/condition")],
    "condition-too-long.yaml": [("condition.invalid", "/edges/1/condition")],
    "dead-end.yaml": [("step.dead_end", "/steps/2")],
    "default-with-condition.yaml": [("edge.default_with_condition", "/edges/1/condition")],
    "duplicate-key.json": [("document.duplicate_key", "/initial_step")],
    "duplicate-key.yaml": [("document.duplicate_key", "/version")],
    "duplicate-step-name.yaml": [("step.duplicate_name", "/steps/3/name")],
    "duration-too-long.yaml": [("duration.invalid", "/steps/1/due")],
    "edge-unknown-source.yaml": [("edge.unknown_source", "/edges/2/source")],
    "edge-unknown-target.yaml": [("edge.unknown_target", "/edges/1/target")],
    "escalation-without-edge.yaml": [("step.escalation_without_edge", "/steps/1")],
    "escalation-zero.yaml": [("escalation.invalid", "/steps/1/escalation/after")],
    "expression-invalid.yaml": [("expression.invalid", "/steps/0/action/values/n")],
    "external-timeout-conflict.yaml": [("step.timeout_conflict", "/steps/0/timeout")],
    "form-invalid.yaml": [("form.invalid", "/steps/1/form/properties/amount/type")],
    "form-pattern-unsupported.yaml": [
        ("form.pattern_unsupported", "/steps/1/form/patternProperties/^(?=x)"),
        ("form.pattern_unsupported", "/steps/1/form/properties/code/pattern"),
    ],
    "form-unknown-dialect.yaml": [("form.invalid", "/steps/1/form/$schema")],
    "format-unsupported.yaml": [("format.unsupported", "/format")],
    "gateway-mode-unknown.yaml": [("value.invalid", "/steps/1/mode")],
    "gateway-no-default.yaml": [("gateway.no_default", "/steps/1")],
    "http-get-with-body.yaml": [("http.body_not_allowed", "/steps/0/action/body")],
    "http-metadata-host.yaml": [("http.host_forbidden", "/steps/0/action/url")],
    "http-not-https.yaml": [("http.url_invalid", "/steps/0/action/url")],
    "infinity.yaml": [("value.not_finite", "/steps/1/form/maximum")],
    "initial-missing.yaml": [("initial.missing", "/initial_step")],
    "initial-unknown.yaml": [("initial.unknown", "/initial_step")],
    "many-defaults.yaml": [("edge.many_defaults", "/steps/1")],
    "missing-field.yaml": [("field.missing", "/edges/1/target")],
    "multi-document.yaml": [("document.syntax", "")],
    "nan.json": [("value.not_finite", "/steps/1/form/maximum")],
    "no-assignee.yaml": [("human.no_assignee", "/steps/1")],
    "no-exit.yaml": [("step.no_exit", "/steps/1"), ("step.no_exit", "/steps/2")],
    "no-steps.yaml": [
        ("initial.unknown", "/initial_step"),
        ("definition.no_steps", "/steps"),
        ("terminal.unknown", "/terminal_steps/0"),
    ],
    "nul-character.json": [("value.nul", "/description")],
    "platform-action-unknown.yaml": [("action.unknown", "/steps/0/action/name")],
    "root-not-object.yaml": [("type.invalid", "")],
    "surrogate.json": [("value.surrogate", "/description")],
    "syntax-error.json": [("document.syntax", "")],
    "syntax-error.yaml": [("document.syntax", "")],
    "terminal-duplicate.yaml": [("terminal.duplicate", "/terminal_steps/1")],
    "terminal-missing.yaml": [
        ("step.no_exit", "/steps/0"),
        ("step.no_exit", "/steps/1"),
        ("step.dead_end", "/steps/2"),
        ("terminal.missing", "/terminal_steps"),
    ],
    "terminal-unknown.yaml": [("terminal.unknown", "/terminal_steps/1")],
    "terminal-with-edges.yaml": [("terminal.has_edges", "/steps/2")],
    "timeout-edge-without-deadline.yaml": [("edge.timeout_without_deadline", "/edges/2")],
    "timer-expression-invalid.yaml": [("expression.invalid", "/steps/2/until")],
    "timer-without-time.yaml": [("timer.invalid", "/steps/2")],
    "too-deep.yaml": [("limit.depth", DEEP)],
    "unknown-action-type.yaml": [("kind.unknown", "/steps/0/action/type")],
    "unknown-field.yaml": [("field.unknown", "/steps/1/asignee")],
    "unknown-kind.yaml": [("kind.unknown", "/steps/0/kind")],
    "unreachable-step.yaml": [("step.unreachable", "/steps/3")],
    "value-out-of-range.yaml": [("value.invalid", "/steps/0/retry/max_attempts")],
    "version-not-semver.yaml": [("version.invalid", "/version")],
    "wrong-type.yaml": [("type.invalid", "/steps/1/candidate_groups")],
}


async def _noop(context: object, inputs: object) -> None:
    return None


def _platform(path: Path) -> Platform | None:
    """A file whose second line is ``# actions: a, b`` is checked against a registry of those."""
    line = path.read_text().splitlines()[1]
    if not line.startswith("# actions:"):
        return None
    registry = ActionRegistry()
    for name in line.removeprefix("# actions:").split(","):
        registry.register(name.strip(), _noop)
    return Platform(actions=registry)


def test_every_file_of_the_corpus_has_its_expectation() -> None:
    assert sorted(p.name for p in INVALID.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_document_is_rejected_with_its_code_and_pointer(name: str) -> None:
    path = INVALID / name
    raw = path.read_bytes()
    syntax = syntax_for(path)
    assert syntax is not None
    problems = check_document(raw, syntax=syntax, platform=_platform(path))
    assert [(p.code, p.pointer) for p in problems] == EXPECTED[name]
    assert all(p.code in PROBLEM_CODES and p.message for p in problems)
    with pytest.raises(DocumentError) as info:
        load_definition(raw, syntax=syntax, platform=_platform(path))
    assert info.value.problems == problems
    assert isinstance(info.value, ValueError)  # the engine's ValidationError


def test_every_problem_is_reported_at_once() -> None:
    doc = minimal()
    doc["version"] = "one"
    doc["steps"][0]["colour"] = "red"
    doc["steps"][1]["action"]["payload"] = {"x": "import os"}
    doc["edges"].append({"source": "start", "target": "nowhere", "condition": "1 +"})
    problems = check_document(json.dumps(doc))
    assert [(p.code, p.pointer) for p in problems] == [
        ("condition.invalid", "/edges/1/condition"),
        ("edge.unknown_target", "/edges/1/target"),
        ("field.unknown", "/steps/0/colour"),
        ("expression.invalid", "/steps/1/action/payload/x"),
        ("version.invalid", "/version"),
    ]


def test_a_document_over_the_size_limit_is_refused_before_parsing() -> None:
    doc = minimal()
    doc["description"] = "x" * (256 * 1024)
    problems = check_document(json.dumps(doc))
    assert [(p.code, p.pointer) for p in problems] == [("limit.bytes", "")]
    assert [p.code for p in check_document(doc)] == ["limit.bytes"]  # given parsed, measured as JSON


def test_too_many_steps_and_edges() -> None:
    names = [f"s{i}" for i in range(201)]
    steps = [{"name": n, "kind": "machine", "action": {"type": "set", "values": {"x": "1"}}} for n in names]
    edges = [{"source": a, "target": b} for a, b in itertools.pairwise(names)]
    edges += [{"source": "s0", "target": n} for n in names[2:] for _ in range(5)][:801]
    doc = {**MINIMAL, "initial_step": "s0", "terminal_steps": ["s200"], "steps": steps, "edges": edges}
    codes = [(p.code, p.pointer) for p in check_document(doc)]
    assert ("limit.steps", "/steps") in codes and ("limit.edges", "/edges") in codes
    small = Platform(limits=DocumentLimits(max_steps=1, max_edges=0))
    assert [p.code for p in check_document(minimal(), platform=small)] == ["limit.edges", "limit.steps"]


@pytest.mark.parametrize("syntax", ["json", "yaml"])
def test_hostile_nesting_is_refused_at_the_depth_limit(syntax: str) -> None:
    text = '{"format": ' + "[" * 100_000 + "]" * 100_000 + "}"  # a crash of PyYAML's C composer
    problems = check_document(text, syntax=syntax)  # type: ignore[arg-type]
    assert [p.code for p in problems] == ["limit.depth"]


def test_a_document_given_parsed_is_checked_the_same() -> None:
    doc = yaml.safe_load((INVALID / "no-exit.yaml").read_text())
    assert [p.code for p in check_document(doc)] == ["step.no_exit", "step.no_exit"]
    assert validate_document(minimal()).name == "minimal"


def test_a_python_object_repeated_in_a_parsed_document_is_refused() -> None:
    doc = minimal()
    doc["steps"][1]["action"]["payload"] = doc["steps"][0]["action"]["values"]
    assert [p.code for p in check_document(doc)] == ["value.repeated"]
    cyclic = minimal()
    cyclic["steps"].append(cyclic)  # type: ignore[arg-type]
    assert [p.code for p in check_document(cyclic)] == ["value.repeated"]


def test_every_problem_code_is_exercised() -> None:
    elsewhere = {"limit.bytes", "limit.steps", "limit.edges", "value.repeated", "export.not_expressible"}
    seen = {code for expected in EXPECTED.values() for code, _ in expected} | elsewhere
    assert seen == set(PROBLEM_CODES)


def test_the_garbage_collector_is_paused_only_while_a_document_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    tree_problems = validation.tree_problems

    def probe(*args: Any) -> Any:
        seen.append(gc.isenabled())
        return tree_problems(*args)

    monkeypatch.setattr(validation, "tree_problems", probe)
    assert gc.isenabled()
    assert not check_document(json.dumps(MINIMAL))
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        assert check_document(b"{not json")
        assert not gc.isenabled()  # a caller's own pause is left as it was
    finally:
        gc.enable()
