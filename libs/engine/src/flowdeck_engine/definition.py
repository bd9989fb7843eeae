"""Workflow definitions: steps connected by edges."""

from __future__ import annotations

import functools
import uuid
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from flowdeck_engine.graph import WorkflowGraph

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowdeck_engine.context import WorkflowContext
    from flowdeck_engine.steps import Step

_NAMESPACE = uuid.UUID("6f1c1f3e-5b7a-4c1e-9a39-0d8f4a1f0c11")


@functools.lru_cache(maxsize=4096)
def _definition_id(name: str, version: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{name}@{version}")


@dataclass(frozen=True, slots=True)
class Edge:
    """A transition from ``source`` to ``target``.

    ``condition`` is an expression in the safe condition language
    (``"context.get('score') >= 80"``) or, in Python-defined workflows, a callable taking the
    :class:`WorkflowContext`. An edge with ``default=True`` is taken only when no other outgoing
    edge of its source matches. An edge with ``on_timeout=True`` is taken only when its source
    (a human step's escalation, or a webhook step's wait) times out, and never otherwise.
    """

    source: str
    target: str
    condition: str | Callable[[WorkflowContext], bool] | None = None
    _: KW_ONLY
    default: bool = False
    on_timeout: bool = False


@dataclass(eq=False)
class WorkflowDefinition:
    """Declarative workflow structure: steps, the edges between them, where to start and end."""

    name: str
    version: str = "1.0.0"
    description: str = ""
    steps: dict[str, Step] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    initial_step: str = ""
    terminal_steps: set[str] = field(default_factory=set)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> uuid.UUID:
        """A stable id for this name and version (the same in every process)."""
        return _definition_id(self.name, self.version)

    def get_graph(self) -> WorkflowGraph:
        """Build and return the graph representation of the workflow."""
        return WorkflowGraph(self)
