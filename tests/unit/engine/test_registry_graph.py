"""WorkflowRegistry and WorkflowGraph."""

from __future__ import annotations

import pytest

from flowdeck_engine import (
    DuplicateDefinitionError,
    Edge,
    ValidationError,
    WorkflowDefinition,
    WorkflowNotFoundError,
    WorkflowRegistry,
)

from .conftest import Set, definition


def make(version: str) -> WorkflowDefinition:
    return definition([Set("a"), Set("b")], [Edge("a", "b")], version=version)


def test_latest_version_is_by_semantic_version() -> None:
    registry = WorkflowRegistry()
    for version in ("1.9.0", "1.10.0", "1.2.0", "2.0.0-rc.1"):
        registry.register_definition(make(version))
    assert registry.get_definition("wf").version == "1.10.0"
    assert registry.get_definition("wf", "1.2.0").version == "1.2.0"
    registry.register_definition(make("2.0.0"))
    assert registry.get_definition("wf").version == "2.0.0"
    assert [d.version for d in registry.list_definitions()] == ["1.2.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]


def test_deactivation_hides_a_version_from_new_starts() -> None:
    registry = WorkflowRegistry()
    registry.register_definition(make("1.0.0"))
    registry.register_definition(make("1.1.0"))
    registry.deactivate("wf", "1.1.0")
    assert registry.get_definition("wf").version == "1.0.0"
    assert registry.get_definition("wf", "1.1.0").version == "1.1.0"  # running instances still find it
    assert [d.version for d in registry.list_definitions()] == ["1.0.0"]
    assert len(registry.list_definitions(active_only=False)) == 2
    with pytest.raises(WorkflowNotFoundError):
        registry.resolve("wf", "1.1.0")
    registry.deactivate("wf", "1.0.0")
    assert not registry.has_definition("wf")
    assert registry.has_definition("wf", "1.0.0")
    with pytest.raises(WorkflowNotFoundError) as info:
        registry.get_definition("wf")
    assert info.value.name == "wf"
    registry.activate("wf", "1.1.0")
    assert registry.get_definition("wf").version == "1.1.0"


def test_versions_are_immutable_and_must_be_semantic() -> None:
    registry = WorkflowRegistry()
    first = make("1.0.0")
    registry.register_definition(first)
    registry.register_definition(first)  # the same object again is a no-op
    with pytest.raises(DuplicateDefinitionError):
        registry.register_definition(make("1.0.0"))
    with pytest.raises(ValidationError, match="semantic"):
        registry.register_definition(make("v1"))


def test_workflow_classes() -> None:
    class MyWorkflow:
        @classmethod
        def get_definition(cls) -> WorkflowDefinition:
            return make("3.0.0")

    registry = WorkflowRegistry()
    registry.register_workflow_class(MyWorkflow)
    assert registry.get_workflow_class("wf") is MyWorkflow
    assert registry.resolve(MyWorkflow).version == "3.0.0"


def test_registration_reports_every_problem() -> None:
    bad = WorkflowDefinition(
        name="bad",
        version="1.0.0",
        steps={"a": Set("a"), "b": Set("b"), "island": Set("island"), "loop": Set("loop")},
        edges=[
            Edge("a", "b"),
            Edge("a", "ghost"),
            Edge("b", "a", condition="context.get("),
            Edge("a", "loop"),
            Edge("loop", "loop"),
        ],
        initial_step="a",
        terminal_steps={"b", "nowhere"},
    )
    with pytest.raises(ValidationError) as info:
        WorkflowRegistry().register_definition(bad)
    codes = {p.code for p in info.value.problems}
    assert codes >= {
        "edge.unknown_target",
        "condition.invalid",
        "terminal.unknown",
        "terminal.has_edges",
        "step.unreachable",
        "step.dead_end",
        "step.no_exit",
    }


def test_graph_navigation_and_mermaid() -> None:
    d = definition(
        [Set("a"), Set("b"), Set("c"), Set("d")],
        [Edge("a", "b"), Edge("a", "c", condition="context.get('x') > 1"), Edge("b", "d"), Edge("c", "d")],
    )
    graph = d.get_graph()
    assert graph.successors("a") == ["b", "c"]
    assert graph.predecessors("d") == ["b", "c"]
    assert graph.validate() == []
    text = graph.to_mermaid()
    assert text.startswith("flowchart TD")
    assert "s_a -->|\"context.get('x') > 1\"| s_c" in text
    live = graph.to_mermaid_with_state(current_steps=["c"], completed_steps=["a", "b"], failed_steps=["d"])
    assert "class s_c current" in live and "class s_a,s_b completed" in live and "class s_d failed" in live


def test_mermaid_escapes_hostile_names() -> None:
    d = definition([Set('x"];click'), Set("y")], [Edge('x"];click', "y")])
    text = d.get_graph().to_mermaid()
    assert '"];click' not in text.replace("#quot;", "")
