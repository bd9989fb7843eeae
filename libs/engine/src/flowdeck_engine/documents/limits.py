"""Upload limits of workflow documents: data, not control flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """Caps checked before anything else of a document is looked at (see docs/reliability.md)."""

    max_bytes: int = 256 * 1024
    """Size of the document's text (or of its JSON encoding, when given parsed)."""
    max_steps: int = 200
    max_edges: int = 1000
    max_depth: int = 32
    """Nesting of arrays and objects; the document itself is at depth 1."""


DEFAULT_LIMITS: Final = DocumentLimits()
