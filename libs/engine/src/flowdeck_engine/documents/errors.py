"""What goes wrong with documents: problems, the error that carries them, and HTTP call errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from flowdeck_engine.exceptions import ValidationError, WorkflowsError

if TYPE_CHECKING:
    from collections.abc import Sequence


PROBLEM_CODES: Final[dict[str, str]] = {
    # the text and the tree
    "document.syntax": "the text is not JSON or YAML (or not UTF-8, or several YAML documents)",
    "document.duplicate_key": "a key appears twice in one object",
    "document.yaml_alias": "YAML anchors and aliases are not supported",
    "value.nul": "a NUL character",
    "value.surrogate": "a string with an unpaired surrogate",
    "value.not_finite": "NaN or an infinite number",
    "value.not_json": "a value JSON cannot hold (a YAML binary, set, date-time tag, a non-string key)",
    "value.repeated": "the same object twice (documents given as Python objects only)",
    "limit.bytes": "the document is larger than the size limit",
    "limit.steps": "more steps than the limit",
    "limit.edges": "more edges than the limit",
    "limit.depth": "nested deeper than the limit",
    # the structure
    "type.invalid": "a value of the wrong type",
    "field.unknown": "a field the format does not have",
    "field.missing": "a required field is missing",
    "kind.unknown": "an unknown step kind or action type",
    "value.invalid": "a value outside its allowed range, length or choices",
    "format.unsupported": "the format field is missing or names another format version",
    "name.invalid": "a name that is not a letter followed by letters, digits, '_', '.' or '-'",
    "version.invalid": "the version is not a semantic version",
    "duration.invalid": "not an ISO 8601 duration in weeks, days, hours, minutes, seconds (or too long)",
    "path.invalid": "not a JSON pointer",
    # steps
    "step.duplicate_name": "two steps have the same name",
    "expression.invalid": "an expression that does not compile under the safe evaluator's rules and caps",
    "form.invalid": "a form that is not a valid JSON Schema",
    "form.pattern_unsupported": "a form pattern RE2 cannot run (backreferences, lookaround)",
    "human.assignee_conflict": "both an assignee and an assignee expression",
    "human.no_assignee": "a human step with no assignee, assignee expression or candidate group",
    "escalation.invalid": "an escalation after no time",
    "timer.invalid": "a timer needs exactly one of duration and until",
    "step.timeout_conflict": "an external job's timeout is given on the step",
    "action.unknown": "a platform action the platform did not register",
    "http.url_invalid": "an http action's URL is not https://host/... (or carries credentials)",
    "http.host_forbidden": "an http action's host is a loopback, private, link-local or metadata address",
    "http.body_not_allowed": "a GET request with a body",
    "gateway.no_default": "an exclusive gateway without a default edge",
    "edge.default_with_condition": "a default edge with a condition",
    # the graph (the engine's WorkflowGraph.validate)
    "definition.no_steps": "no steps",
    "initial.missing": "no initial step",
    "initial.unknown": "the initial step is not a step",
    "terminal.missing": "no terminal step",
    "terminal.unknown": "a terminal step is not a step",
    "terminal.duplicate": "a terminal step is listed twice",
    "terminal.has_edges": "a terminal step has outgoing edges",
    "edge.unknown_source": "an edge from a step that does not exist",
    "edge.unknown_target": "an edge to a step that does not exist",
    "edge.many_defaults": "a step with more than one default edge",
    "edge.timeout_without_deadline": "an on_timeout edge from a step that cannot time out",
    "condition.invalid": "a condition that does not compile under the safe evaluator's rules and caps",
    "step.escalation_without_edge": "an escalation without reassignment, and no on_timeout edge to take",
    "step.dead_end": "a step that is not terminal and has no outgoing edge",
    "step.unreachable": "a step the initial step does not lead to",
    "step.no_exit": "a step from which no terminal step can be reached",
    # export
    "export.not_expressible": "a step or condition of a Python definition that runs Python code",
}
"""Every problem code, with what it means. Codes are stable: clients may match on them."""


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
