"""What goes wrong with documents: problems, the error that carries them, and HTTP call errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowdeck_engine.exceptions import ValidationError, WorkflowsError

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True, slots=True)
class DocumentProblem:
    """One thing wrong with a document: a stable ``code``, a message, and a JSON ``pointer`` to
    the offending place (``""`` is the whole document)."""

    code: str
    message: str
    pointer: str = ""

    def __str__(self) -> str:
        where = f"{self.pointer}: " if self.pointer else ""
        return f"{where}{self.message} [{self.code}]"


class DocumentError(ValidationError):
    """A document is invalid; ``problems`` lists every problem found, in document order."""

    problems: list[DocumentProblem]

    def __init__(self, problems: Sequence[DocumentProblem], subject: str = "the workflow document") -> None:
        shown = "; ".join(str(p) for p in problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        super().__init__(f"{subject} has {len(problems)} problem(s): {shown}{more}", problems)


class NotExpressibleError(DocumentError):
    """A definition cannot be written as a document: a step runs Python code, or an edge's
    condition is a Python callable. Each problem points at one such step or edge and names it."""

    def __init__(self, problems: Sequence[DocumentProblem]) -> None:
        super().__init__(problems, "the definition cannot be exported as a document: it")


class HttpCallError(WorkflowsError):
    """An ``http`` action's call failed. ``non_retryable`` is True when trying again cannot help
    (the engine then fails the step at once instead of retrying)."""

    def __init__(self, detail: str, *, non_retryable: bool = False) -> None:
        super().__init__(detail)
        self.non_retryable = non_retryable
        self.retryable = not non_retryable


class ForbiddenHostError(HttpCallError):
    """The target host resolves to an address the platform does not allow (loopback, private,
    link-local, metadata, ...)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"host {host!r} resolves to an address that is not allowed", non_retryable=True)
        self.host = host
