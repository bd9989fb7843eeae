"""Round trips: document -> definition -> document, and Python definitions written as documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowdeck_engine import (
    BaseHumanStep,
    BaseMachineStep,
    Edge,
    Escalation,
    GatewayMode,
    GatewayStep,
    RetryPolicy,
    TimerStep,
    WebhookStep,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowStatus,
)
from flowdeck_engine.documents import (
    DocumentError,
    NotExpressibleError,
    compile_document,
    encode_document,
    export_document,
    format_duration,
    load_definition,
    load_document,
    parse_duration,
    validate_document,
)

from .conftest import EXAMPLES, Harness


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_round_trip(path: Any) -> None:
    document = validate_document(path.read_bytes(), syntax="yaml")
    definition = compile_document(document)
    assert export_document(definition) == document
    loaded, compiled = load_document(path.read_bytes(), syntax="yaml")
    assert loaded == document and export_document(compiled) == document
    for syntax in ("json", "yaml"):
        assert validate_document(encode_document(document, syntax), syntax=syntax) == document


def test_a_document_in_other_words_exports_in_canonical_form() -> None:
    raw = (EXAMPLES / "expense-approval.yaml").read_text().replace("due: P2D", "due: PT48H")
    document = validate_document(raw, syntax="yaml")
    exported = export_document(load_definition(raw, syntax="yaml"))
    assert exported != document
    assert exported.steps[2].due == "P2D"  # type: ignore[union-attr]
    assert export_document(compile_document(exported)) == exported


class Approve(BaseHumanStep):
    name = "approve"
    title = "Approve it"
    form_schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    candidate_groups = ("managers",)
    due = timedelta(days=2)
    escalation = Escalation(timedelta(days=1), ("leads",))


def python_definition() -> WorkflowDefinition:
    steps: list[Any] = [
        Approve(),
        GatewayStep("route", mode=GatewayMode.EXCLUSIVE),
        TimerStep("cool_off", duration=timedelta(minutes=5)),
        TimerStep("until_new_year", until=datetime(2027, 1, 1, tzinfo=UTC)),
        WebhookStep("sign", timeout=timedelta(hours=1), result_key="signature"),
        BaseHumanStep("archive", assignee="clerk"),
    ]
    edges = [
        Edge("approve", "route"),
        Edge("route", "cool_off", "context.get('ok') == True"),
        Edge("route", "until_new_year", default=True),
        Edge("cool_off", "sign"),
        Edge("until_new_year", "sign"),
        Edge("sign", "archive"),
        Edge("sign", "archive", on_timeout=True),
    ]
    return WorkflowDefinition(
        name="python-built",
        version="2.1.0",
        description="Built with the class API.",
        steps={s.name: s for s in steps},
        edges=edges,
        initial_step="approve",
        terminal_steps={"archive"},
    )


async def test_a_python_definition_of_expressible_steps_exports_and_runs(h: Harness) -> None:
    document = export_document(python_definition())
    kinds = [type(s).__name__.removesuffix("StepSpec") for s in document.steps]
    assert kinds == ["Human", "Gateway", "Timer", "Timer", "Webhook", "Human"]
    assert document.steps[0].form == Approve.form_schema  # type: ignore[union-attr]
    assert document.steps[3].until == "'2027-01-01T00:00:00+00:00'"  # type: ignore[union-attr]
    definition = compile_document(document)
    assert export_document(definition) == document
    h.register(definition)
    instance = await h.engine.start_workflow("python-built")
    await h.engine.complete_human_task(instance.id, "approve", "m", {"ok": True})
    await h.advance(minutes=5)
    await h.engine.receive_callback(instance.id, "sign", {"by": "m"})
    await h.engine.complete_human_task(instance.id, "archive", "clerk", {})
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert instance.context.get("signature") == {"by": "m"}


class Charge(BaseMachineStep):
    async def execute(self, context: WorkflowContext) -> None:
        context.set("charged", True)


class PickReviewer(BaseHumanStep):
    candidate_groups = ("reviewers",)

    def resolve_assignee(self, data: Any) -> str | None:
        return "someone"


def test_steps_that_run_python_code_are_named_in_one_error() -> None:
    definition = python_definition()
    definition.steps["route"] = Charge("route", retry_policy=RetryPolicy(max_attempts=2))
    definition.steps["approve"] = PickReviewer("approve")
    definition.edges[1] = Edge("route", "cool_off", lambda ctx: bool(ctx.get("ok")))
    with pytest.raises(NotExpressibleError) as info:
        export_document(definition)
    assert [(p.code, p.pointer) for p in info.value.problems] == [
        ("export.not_expressible", "/steps/0"),
        ("export.not_expressible", "/steps/1"),
        ("export.not_expressible", "/edges/1/condition"),
    ]
    messages = [p.message for p in info.value.problems]
    assert "'approve'" in messages[0] and "resolve_assignee" in messages[0]
    assert "'route'" in messages[1] and "Charge" in messages[1]
    assert "'route' -> 'cool_off'" in messages[2]


def test_an_exported_definition_that_is_no_valid_document_says_why() -> None:
    definition = python_definition()
    definition.name = "has spaces"
    with pytest.raises(DocumentError) as info:
        export_document(definition)
    assert [(p.code, p.pointer) for p in info.value.problems] == [("name.invalid", "/name")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("PT0S", timedelta(0)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("P1W", timedelta(days=7)),
        ("P1DT2H3M4.000005S", timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5)),
    ],
)
def test_durations(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["P", "PT", "P1Y", "P1M", "P1DT", "PT1.S", "1D", "P999999W", "-PT1S"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer"):
        parse_duration(text)
