"""Writing a :class:`~flowdeck_engine.WorkflowDefinition` as a document.

Steps compiled from documents export as they were written. Steps built with the Python class API
export when their behaviour is data: a human step, gateway, timer or webhook step whose class
overrides none of the methods that carry behaviour. A step that runs Python code (any other
machine step) or an edge whose condition is a Python callable cannot be written as a document;
:class:`NotExpressibleError` then names every such step and edge. ``metadata`` is not exported.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from flowdeck_engine.documents.durations import format_duration
from flowdeck_engine.documents.errors import DocumentError, DocumentProblem, NotExpressibleError
from flowdeck_engine.documents.model import (
    FORMAT,
    EdgeSpec,
    EmitAction,
    EscalationSpec,
    ExternalAction,
    GatewayStepSpec,
    HttpAction,
    HumanStepSpec,
    MachineStepSpec,
    PlatformAction,
    RetrySpec,
    SetAction,
    TimerStepSpec,
    WebhookStepSpec,
    WorkflowDocument,
)
from flowdeck_engine.documents.steps import (
    EmitEventStep,
    ExpressionTimerStep,
    ExternalJobStep,
    HttpCallStep,
    HumanTaskStep,
    PlatformActionStep,
    SetValuesStep,
)
from flowdeck_engine.documents.validation import check_document
from flowdeck_engine.steps import BaseHumanStep, GatewayStep, TimerStep, WebhookStep

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from flowdeck_engine.conditions import Condition
    from flowdeck_engine.definition import WorkflowDefinition
    from flowdeck_engine.documents.model import StepSpec
    from flowdeck_engine.policies import RetryPolicy

_BEHAVIOUR = ("execute", "can_execute", "on_success", "on_failure", "resolve_assignee", "fire_at")


def export_document(definition: WorkflowDefinition) -> WorkflowDocument:
    """The document of ``definition``.

    Raises :class:`NotExpressibleError` naming every step and edge that cannot be written as a
    document, and :class:`DocumentError` when the document written is not valid (a step name
    with spaces, say).
    """
    problems: list[DocumentProblem] = []
    steps: list[StepSpec] = []
    for i, (name, step) in enumerate(definition.steps.items()):
        try:
            spec = _step(name, step)
        except ValueError as exc:
            problems.append(DocumentProblem("export.not_expressible", f"step {name!r}: {exc}", f"/steps/{i}"))
        else:
            steps.append(spec)
    edges: list[EdgeSpec] = []
    for i, edge in enumerate(definition.edges):
        if edge.condition is not None and not isinstance(edge.condition, str):
            message = f"the condition of the edge {edge.source!r} -> {edge.target!r} is Python code, not an expression"
            problems.append(DocumentProblem("export.not_expressible", message, f"/edges/{i}/condition"))
            continue
        edges.append(
            EdgeSpec(
                source=edge.source,
                target=edge.target,
                condition=edge.condition,
                default=edge.default,
                on_timeout=edge.on_timeout,
            )
        )
    if problems:
        raise NotExpressibleError(problems)
    names = list(definition.steps)
    terminal = [n for n in names if n in definition.terminal_steps] + sorted(definition.terminal_steps - set(names))
    document = WorkflowDocument(
        format=FORMAT,
        name=definition.name,
        version=definition.version,
        description=definition.description,
        initial_step=definition.initial_step,
        terminal_steps=terminal,
        steps=steps,
        edges=edges,
    )
    written = check_document(msgspec.to_builtins(document))
    if written:
        raise DocumentError(written, "the exported document")
    return document


def _step(name: str, step: Any) -> StepSpec:
    for cls, export in _EXPORTERS:
        if isinstance(step, cls):
            changed = [m for m in _BEHAVIOUR if getattr(type(step), m, None) is not getattr(cls, m, None)]
            if changed:
                raise ValueError(f"{type(step).__name__} overrides {', '.join(changed)} (Python code)")
            return export(name, step)
    raise ValueError(f"{type(step).__name__} runs Python code; register it as a platform action instead")


def _duration(value: timedelta | None) -> str | None:
    return None if value is None else format_duration(value)


def _sources(expressions: Mapping[str, Condition]) -> dict[str, str]:
    return {key: expression.source for key, expression in expressions.items()}


def _retry(policy: RetryPolicy | None) -> RetrySpec | None:
    if policy is None:
        return None
    return RetrySpec(
        max_attempts=policy.max_attempts,
        initial_interval=format_duration(policy.initial_interval),
        backoff_coefficient=policy.backoff_coefficient,
        maximum_interval=_duration(policy.maximum_interval),
        non_retryable_errors=sorted(policy.non_retryable_errors),
    )


def _machine(name: str, step: Any, action: Any) -> MachineStepSpec:
    return MachineStepSpec(
        name=name,
        description=step.description,
        action=action,
        retry=_retry(step.retry_policy),
        timeout=_duration(step.timeout),
    )


def _set(name: str, step: SetValuesStep) -> StepSpec:
    return _machine(name, step, SetAction(values=_sources(step.values)))


def _emit(name: str, step: EmitEventStep) -> StepSpec:
    return _machine(name, step, EmitAction(event=step.event, payload=_sources(step.payload)))


def _http(name: str, step: HttpCallStep) -> StepSpec:
    action = HttpAction(
        url=step.url,
        method=step.method,  # type: ignore[arg-type]
        body=dict(step.body),
        result_path=step.result_path,
        timeout=format_duration(step.request_timeout),
    )
    return _machine(name, step, action)


def _platform(name: str, step: PlatformActionStep) -> StepSpec:
    action = PlatformAction(name=step.action, input=_sources(step.inputs), result_key=step.result_key)
    return _machine(name, step, action)


def _external(name: str, step: ExternalJobStep) -> StepSpec:
    action = ExternalAction(job_type=step.job_type, timeout=_duration(step.timeout), result_key=step.result_key)
    return MachineStepSpec(name=name, description=step.description, action=action)


def _human(name: str, step: BaseHumanStep) -> StepSpec:
    expression = getattr(step, "assignee_expression", None)
    escalation = step.escalation
    return HumanStepSpec(
        name=name,
        description=step.description,
        title=step.title,
        form=None if step.form_schema is None else dict(step.form_schema),
        assignee=step.assignee,
        assignee_expression=None if expression is None else expression.source,
        candidate_groups=list(step.candidate_groups),
        due=_duration(step.due),
        reminder=_duration(step.reminder),
        escalation=None
        if escalation is None
        else EscalationSpec(after=format_duration(escalation.after), reassign_to=list(escalation.reassign_to)),
    )


def _gateway(name: str, step: GatewayStep) -> StepSpec:
    return GatewayStepSpec(name=name, description=step.description, mode=step.mode.value)


def _timer(name: str, step: TimerStep) -> StepSpec:
    if isinstance(step, ExpressionTimerStep):
        return TimerStepSpec(name=name, description=step.description, until=step.until_expression.source)
    if step.until is not None:
        return TimerStepSpec(name=name, description=step.description, until=repr(step.until.isoformat()))
    return TimerStepSpec(
        name=name, description=step.description, duration=format_duration(step.duration or timedelta(0))
    )


def _webhook(name: str, step: WebhookStep) -> StepSpec:
    return WebhookStepSpec(
        name=name, description=step.description, timeout=_duration(step.timeout), result_key=step.result_key
    )


_EXPORTERS: tuple[tuple[type[Any], Callable[[str, Any], StepSpec]], ...] = (
    (SetValuesStep, _set),
    (EmitEventStep, _emit),
    (HttpCallStep, _http),
    (PlatformActionStep, _platform),
    (ExternalJobStep, _external),
    (HumanTaskStep, _human),
    (BaseHumanStep, _human),
    (GatewayStep, _gateway),
    (ExpressionTimerStep, _timer),
    (TimerStep, _timer),
    (WebhookStep, _webhook),
)
