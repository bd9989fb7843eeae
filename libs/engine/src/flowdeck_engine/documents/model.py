"""The workflow document format, defined once as msgspec Structs.

A document is what a tenant uploads (JSON or YAML); :mod:`flowdeck_engine.documents.validation`
turns it into a :class:`~flowdeck_engine.WorkflowDefinition`. The published JSON Schema is generated
from these classes (:mod:`flowdeck_engine.documents.schema`), so their docstrings and ``Meta``
descriptions are what editors show.

Every expression (edge conditions, ``set`` values, ``emit`` payloads, assignee and timer
expressions) is written in the safe condition language (``context.get('amount') > 100``).
Durations are ISO 8601 durations in weeks, days, hours, minutes and seconds (``P2D``, ``PT1H30M``);
years and months are refused because their length varies. A ``Meta(extra={"code": ...})`` names
the problem code reported when that field is missing or breaks its constraint.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from flowdeck_engine.documents.durations import DURATION_PATTERN

__all__ = [
    "FORMAT",
    "Action",
    "EdgeSpec",
    "EmitAction",
    "EscalationSpec",
    "ExternalAction",
    "GatewayStepSpec",
    "HttpAction",
    "HumanStepSpec",
    "MachineStepSpec",
    "PlatformAction",
    "RetrySpec",
    "SetAction",
    "StepSpec",
    "TimerStepSpec",
    "WebhookStepSpec",
    "WorkflowDocument",
]

FORMAT: Final = "flowdeck.workflow/v1"
"""The document format this version of the engine reads (the ``format`` field)."""

SEMVER_PATTERN: Final = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
NAME_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.-]*$"
POINTER_PATTERN: Final = r"^(?:/(?:[^~/]|~[01])*)*$"

Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN,
        description="A letter, then letters, digits, '_', '.' or '-' (at most 100 characters).",
        extra={"code": "name.invalid"},
    ),
]
StepRef = Annotated[str, Meta(min_length=1, max_length=100, description="The name of a step.")]
Text = Annotated[str, Meta(max_length=10_000)]
Title = Annotated[str, Meta(max_length=200)]
Group = Annotated[str, Meta(min_length=1, max_length=200, description="A group of users.")]
UserId = Annotated[str, Meta(min_length=1, max_length=200, description="A user id.")]
ContextKey = Annotated[str, Meta(min_length=1, max_length=200, description="A top-level key of the context.")]
ContextPath = Annotated[
    str,
    Meta(
        max_length=1000,
        pattern=POINTER_PATTERN,
        description="A JSON pointer into the context ('/employee/email'; '' is the whole context).",
        extra={"code": "path.invalid"},
    ),
]
Expression = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=1000,
        description="An expression of the safe condition language, e.g. \"context.get('amount') * 2\".",
        extra={"code": "expression.invalid"},
    ),
]
ConditionText = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=1000,
        description="A condition in the safe condition language, e.g. \"context.get('amount') > 100\".",
        extra={"code": "condition.invalid"},
    ),
]
Duration = Annotated[
    str,
    Meta(
        pattern=DURATION_PATTERN,
        description="An ISO 8601 duration in weeks, days, hours, minutes, seconds: 'P2D', 'PT1H30M', 'PT0.5S'.",
        examples=["PT30M", "P2D"],
        extra={"code": "duration.invalid"},
    ),
]


class _Spec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Common configuration: unknown fields rejected, defaults left out when encoding."""


class RetrySpec(_Spec):
    """How often a failing machine step is tried, and how long to wait between attempts."""

    max_attempts: Annotated[int, Meta(ge=1, le=100, description="Attempts in all, the first included.")]
    initial_interval: Duration = "PT1S"
    backoff_coefficient: Annotated[float, Meta(ge=1, le=10)] = 2.0
    maximum_interval: Duration | None = "PT10M"
    non_retryable_errors: list[Annotated[str, Meta(min_length=1, max_length=200)]] = []


class EscalationSpec(_Spec):
    """What happens to a task still open ``after`` it was opened: it is reassigned to the groups in
    ``reassign_to``, or, without them, closed so the workflow takes the step's ``on_timeout`` edge."""

    after: Duration
    reassign_to: list[Group] = []


class SetAction(_Spec, tag="set", tag_field="type"):
    """Set context keys to the values of expressions (all evaluated against the context as it was)."""

    values: Annotated[dict[ContextKey, Expression], Meta(min_length=1)]


class HttpAction(_Spec, tag="http", tag_field="type"):
    """Call an HTTPS endpoint with parts of the context; merge the JSON response into the context.

    Hosts that resolve to loopback, private, link-local or metadata addresses are refused unless
    the platform allows them. Redirects are not followed.
    """

    url: Annotated[str, Meta(min_length=1, max_length=2000, description="An https:// URL.")]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    body: Annotated[
        dict[Annotated[str, Meta(min_length=1, max_length=200)], ContextPath],
        Meta(description="The JSON body: each key gets the context value at a path (not allowed with GET)."),
    ] = {}
    result_path: Annotated[
        ContextPath | None,
        Meta(description="Where the response JSON is merged into the context; left out, it is dropped."),
    ] = None
    timeout: Duration = "PT10S"


class EmitAction(_Spec, tag="emit", tag_field="type"):
    """Publish an event with a payload computed from expressions."""

    event: Annotated[str, Meta(min_length=1, max_length=200, pattern=NAME_PATTERN, extra={"code": "name.invalid"})]
    payload: dict[ContextKey, Expression] = {}


class ExternalAction(_Spec, tag="external", tag_field="type"):
    """A job that the tenant's own workers fetch and complete through the API.

    The step waits for the completion; its payload is stored at ``result_key`` (merged at the top
    level when left out). After ``timeout`` the step takes its ``on_timeout`` edges, or fails.
    """

    job_type: Name
    timeout: Duration | None = None
    result_key: ContextKey | None = None


class PlatformAction(_Spec, tag="platform", tag_field="type"):
    """An action the platform registered by name, called with inputs computed from expressions."""

    name: Name
    input: dict[ContextKey, Expression] = {}
    result_key: ContextKey | None = None


Action = SetAction | HttpAction | EmitAction | ExternalAction | PlatformAction


class _StepSpec(_Spec, tag_field="kind"):
    name: Name
    description: Text = ""


class MachineStepSpec(_StepSpec, tag="machine", kw_only=True):
    """An automated step: it carries out its action, tried again as its retry policy allows."""

    action: Action
    retry: RetrySpec | None = None
    timeout: Annotated[
        Duration | None,
        Meta(description="How long one attempt may take (an external action has a timeout of its own)."),
    ] = None


class HumanStepSpec(_StepSpec, tag="human"):
    """A task for a person: they complete its form, and the form data is merged into the context."""

    title: Title = ""
    form: Annotated[
        dict[str, Any] | None,
        Meta(description="A JSON Schema of the form data (draft 7 unless it names another with $schema)."),
    ] = None
    assignee: UserId | None = None
    assignee_expression: Annotated[
        Expression | None,
        Meta(description="An expression giving the assignee's user id, e.g. \"context.get('manager_id')\"."),
    ] = None
    candidate_groups: list[Group] = []
    due: Duration | None = None
    reminder: Duration | None = None
    escalation: EscalationSpec | None = None


class GatewayStepSpec(_StepSpec, tag="gateway"):
    """A decision: ``exclusive`` takes the first outgoing edge whose condition holds, else its
    default edge (which it must have); ``inclusive`` takes every such edge, else the default."""

    mode: Literal["exclusive", "inclusive"] = "exclusive"


class TimerStepSpec(_StepSpec, tag="timer"):
    """Waits for a ``duration``, or until the time an ``until`` expression gives (an ISO 8601
    date-time with a time zone, e.g. \"context.get('publish_at')\")."""

    duration: Duration | None = None
    until: Expression | None = None


class WebhookStepSpec(_StepSpec, tag="webhook"):
    """Waits for an external system to call back; the payload is stored at ``result_key`` (merged
    at the top level when left out). After ``timeout`` the step takes its ``on_timeout`` edges, or fails."""

    timeout: Duration | None = None
    result_key: ContextKey | None = None


StepSpec = MachineStepSpec | HumanStepSpec | GatewayStepSpec | TimerStepSpec | WebhookStepSpec


class EdgeSpec(_Spec):
    """A transition. Several edges leaving a step run in parallel; a step with several incoming
    edges waits for every branch that was taken (a join)."""

    source: StepRef
    target: StepRef
    condition: ConditionText | None = None
    default: Annotated[bool, Meta(description="Taken only when no other edge of the source applies.")] = False
    on_timeout: Annotated[
        bool,
        Meta(
            description="Taken only when the source times out (an escalation without reassignment, a wait's timeout)."
        ),
    ] = False


class WorkflowDocument(_Spec, kw_only=True):
    """A Flowdeck workflow definition document."""

    format: Annotated[
        Literal["flowdeck.workflow/v1"],
        Meta(description="The version of this document format.", extra={"code": "format.unsupported"}),
    ]
    name: Name
    version: Annotated[
        str,
        Meta(
            pattern=SEMVER_PATTERN,
            description="A semantic version: MAJOR.MINOR.PATCH.",
            extra={"code": "version.invalid"},
        ),
    ]
    description: Text = ""
    initial_step: Annotated[str, Meta(min_length=1, max_length=100, extra={"code": "initial.missing"})]
    terminal_steps: Annotated[list[StepRef], Meta(min_length=1, extra={"code": "terminal.missing"})]
    steps: Annotated[list[StepSpec], Meta(min_length=1, extra={"code": "definition.no_steps"})]
    edges: list[EdgeSpec] = []
