"""A registered workflow definition as a JSON document (what ``workflow_definitions`` stores)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowdeck_engine import WorkflowDefinition


def definition_document(definition: WorkflowDefinition) -> dict[str, Any]:
    """Steps (name, type, class), edges (with string conditions), initial and terminal steps."""
    return {
        "name": definition.name,
        "version": definition.version,
        "description": definition.description,
        "initial_step": definition.initial_step,
        "terminal_steps": sorted(definition.terminal_steps),
        "steps": [
            {
                "name": name,
                "type": step.step_type.value,
                "description": step.description,
                "class": f"{type(step).__module__}.{type(step).__qualname__}",
            }
            for name, step in definition.steps.items()
        ],
        "edges": [
            {
                "source": e.source,
                "target": e.target,
                "condition": e.condition if isinstance(e.condition, str) or e.condition is None else "<callable>",
                "default": e.default,
            }
            for e in definition.edges
        ],
    }
