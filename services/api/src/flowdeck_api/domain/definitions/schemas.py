"""Definition schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class DefinitionSummary(msgspec.Struct, kw_only=True):
    """One version of a workflow definition."""

    name: str
    version: str
    description: str | None
    is_active: bool
    created_at: datetime


class DefinitionRead(DefinitionSummary, kw_only=True):
    """One version with its document."""

    document: dict[str, Any]


class DefinitionVersions(msgspec.Struct, kw_only=True):
    """Every version of one workflow, oldest first."""

    name: str
    versions: list[DefinitionSummary]


class GraphNode(msgspec.Struct, kw_only=True):
    """A step of the graph."""

    name: str
    type: str


class GraphEdge(msgspec.Struct, kw_only=True):
    """An edge of the graph."""

    source: str
    target: str
    condition: str | None = None
    default: bool = False
    on_timeout: bool = False


class GraphRead(msgspec.Struct, kw_only=True):
    """A workflow's graph: Mermaid text and the same as JSON."""

    mermaid: str
    initial_step: str
    terminal_steps: list[str]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
