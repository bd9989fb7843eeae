"""Each step of a document compiled to an engine step, its problems reported on the way.

A step with problems still compiles to the best step it can (the faulty parts left out), so the
graph checks that follow see it as it is meant to be.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators

from flowdeck_engine.conditions import compile_condition
from flowdeck_engine.documents.durations import parse_duration
from flowdeck_engine.documents.errors import DocumentProblem
from flowdeck_engine.documents.http import StdlibTransport, url_problem
from flowdeck_engine.documents.metaschema import plainly_valid
from flowdeck_engine.documents.model import (
    EmitAction,
    ExternalAction,
    GatewayStepSpec,
    HttpAction,
    HumanStepSpec,
    MachineStepSpec,
    PlatformAction,
    SetAction,
    TimerStepSpec,
)
from flowdeck_engine.documents.patterns import unsupported_patterns
from flowdeck_engine.documents.pointers import escape
from flowdeck_engine.documents.steps import (
    EmitEventStep,
    ExpressionTimerStep,
    ExternalJobStep,
    HttpCallStep,
    HumanTaskStep,
    PlatformActionStep,
    SetValuesStep,
)
from flowdeck_engine.enums import GatewayMode
from flowdeck_engine.exceptions import ConditionSyntaxError
from flowdeck_engine.policies import Escalation, RetryPolicy
from flowdeck_engine.steps import GatewayStep, TimerStep, WebhookStep

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowdeck_engine.conditions import Condition
    from flowdeck_engine.documents.actions import Platform
    from flowdeck_engine.documents.model import RetrySpec, StepSpec
    from flowdeck_engine.steps import BaseStep


class StepCompiler:
    """Compiles steps for one document, collecting problems in ``problems``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.problems: list[DocumentProblem] = []
        self._transport = platform.transport or StdlibTransport(platform.http)

    def step(self, spec: StepSpec, pointer: str) -> BaseStep:
        """The engine step for ``spec`` (at ``pointer`` in the document)."""
        if isinstance(spec, MachineStepSpec):
            return self._machine(spec, pointer)
        if isinstance(spec, HumanStepSpec):
            return self._human(spec, pointer)
        if isinstance(spec, GatewayStepSpec):
            return GatewayStep(spec.name, spec.description, mode=GatewayMode(spec.mode))
        if isinstance(spec, TimerStepSpec):
            return self._timer(spec, pointer)
        return WebhookStep(
            spec.name,
            spec.description,
            timeout=self.duration(spec.timeout, f"{pointer}/timeout"),
            result_key=spec.result_key,
        )

    # --- pieces -----------------------------------------------------------------------------------

    def add(self, code: str, message: str, pointer: str) -> None:
        """Report a problem."""
        self.problems.append(DocumentProblem(code, message, pointer))

    def expression(self, source: str | None, pointer: str) -> Condition | None:
        """The compiled expression, or None (reported) when it does not compile."""
        if source is None:
            return None
        try:
            return compile_condition(source)
        except ConditionSyntaxError as exc:
            self.add("expression.invalid", exc.reason, pointer)
            return None

    def expressions(self, sources: Mapping[str, str], pointer: str) -> dict[str, Condition]:
        """The compiled expressions of a mapping (those that compile)."""
        compiled = {key: self.expression(source, f"{pointer}/{escape(key)}") for key, source in sources.items()}
        return {key: expression for key, expression in compiled.items() if expression is not None}

    def duration(self, text: str | None, pointer: str) -> timedelta | None:
        """The duration, or None when absent or invalid (reported)."""
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.add("duration.invalid", str(exc), pointer)
            return None

    def _retry(self, spec: RetrySpec | None, pointer: str) -> RetryPolicy | None:
        if spec is None:
            return None
        initial = self.duration(spec.initial_interval, f"{pointer}/initial_interval")
        maximum = self.duration(spec.maximum_interval, f"{pointer}/maximum_interval")
        return RetryPolicy(
            max_attempts=spec.max_attempts,
            initial_interval=initial if initial is not None else timedelta(seconds=1),
            backoff_coefficient=spec.backoff_coefficient,
            maximum_interval=maximum,
            non_retryable_errors=frozenset(spec.non_retryable_errors),
        )

    def _form(self, form: dict[str, Any] | None, pointer: str) -> dict[str, Any] | None:
        if form is None:
            return None
        checker = _schema_checker(form)
        if checker is None:
            self.add(
                "form.invalid",
                "form is not a valid JSON Schema: its $schema names no known dialect",
                f"{pointer}/$schema",
            )
            return None
        if (type(checker) is _DRAFT7 and plainly_valid(form)) or checker.is_valid(form):
            refused = list(unsupported_patterns(form, pointer))
            for where, pattern in refused:
                self.add(
                    "form.pattern_unsupported",
                    f"pattern {pattern!r} cannot be used: form patterns run on RE2 (linear time), which has "
                    "no backreferences or lookaround",
                    where,
                )
            return None if refused else form
        error = schema_errors.best_match(checker.iter_errors(form))
        where = pointer + "".join(f"/{escape(part)}" for part in error.absolute_path)
        self.add("form.invalid", f"form is not a valid JSON Schema: {error.message}", where)
        return None

    # --- kinds -------------------------------------------------------------------------------------

    def _machine(self, spec: MachineStepSpec, pointer: str) -> BaseStep:
        common: dict[str, Any] = {
            "retry_policy": self._retry(spec.retry, f"{pointer}/retry"),
            "timeout": self.duration(spec.timeout, f"{pointer}/timeout"),
        }
        action = spec.action
        at = f"{pointer}/action"
        if isinstance(action, SetAction):
            return SetValuesStep(
                spec.name, spec.description, values=self.expressions(action.values, f"{at}/values"), **common
            )
        if isinstance(action, EmitAction):
            payload = self.expressions(action.payload, f"{at}/payload")
            return EmitEventStep(spec.name, spec.description, event=action.event, payload=payload, **common)
        if isinstance(action, HttpAction):
            return self._http(spec, action, at, common)
        if isinstance(action, ExternalAction):
            if spec.timeout is not None:
                self.add(
                    "step.timeout_conflict", "an external job's timeout is the action's timeout", f"{pointer}/timeout"
                )
            timeout = self.duration(action.timeout, f"{at}/timeout")
            return ExternalJobStep(
                spec.name, spec.description, job_type=action.job_type, timeout=timeout, result_key=action.result_key
            )
        return self._platform(spec, action, at, common)

    def _http(self, spec: MachineStepSpec, action: HttpAction, at: str, common: dict[str, Any]) -> BaseStep:
        problem = url_problem(action.url, self.platform.http)
        if problem is not None:
            self.add(*problem, f"{at}/url")
        if action.method == "GET" and action.body:
            self.add("http.body_not_allowed", "a GET request has no body", f"{at}/body")
        request_timeout = self.duration(action.timeout, f"{at}/timeout")
        return HttpCallStep(
            spec.name,
            spec.description,
            url=action.url,
            method=action.method,
            body=action.body,
            result_path=action.result_path,
            request_timeout=request_timeout if request_timeout is not None else self.platform.http.max_timeout,
            transport=self._transport,
            **common,
        )

    def _platform(self, spec: MachineStepSpec, action: PlatformAction, at: str, common: dict[str, Any]) -> BaseStep:
        registry = self.platform.actions
        function = None if registry is None else registry.get(action.name)
        if registry is not None and function is None:
            known = ", ".join(registry.names()) or "none"
            self.add("action.unknown", f"no platform action is named {action.name!r} (known: {known})", f"{at}/name")
        return PlatformActionStep(
            spec.name,
            spec.description,
            action=action.name,
            inputs=self.expressions(action.input, f"{at}/input"),
            result_key=action.result_key,
            function=function,
            **common,
        )

    def _human(self, spec: HumanStepSpec, pointer: str) -> BaseStep:
        if spec.assignee is not None and spec.assignee_expression is not None:
            self.add(
                "human.assignee_conflict", "give an assignee or an assignee_expression, not both", f"{pointer}/assignee"
            )
        if spec.assignee is None and spec.assignee_expression is None and not spec.candidate_groups:
            self.add("human.no_assignee", "nobody can take this task: give an assignee or candidate_groups", pointer)
        escalation = None
        if spec.escalation is not None:
            after = self.duration(spec.escalation.after, f"{pointer}/escalation/after")
            if after is not None and not after:
                self.add(
                    "escalation.invalid",
                    "an escalation's `after` must be longer than zero",
                    f"{pointer}/escalation/after",
                )
            elif after is not None:
                escalation = Escalation(after, tuple(spec.escalation.reassign_to))
        return HumanTaskStep(
            spec.name,
            spec.description,
            assignee_expression=self.expression(spec.assignee_expression, f"{pointer}/assignee_expression"),
            title=spec.title,
            form_schema=self._form(spec.form, f"{pointer}/form"),
            assignee=spec.assignee,
            candidate_groups=spec.candidate_groups,
            due=self.duration(spec.due, f"{pointer}/due"),
            reminder=self.duration(spec.reminder, f"{pointer}/reminder"),
            escalation=escalation,
        )

    def _timer(self, spec: TimerStepSpec, pointer: str) -> BaseStep:
        if (spec.duration is None) == (spec.until is None):
            self.add("timer.invalid", "a timer needs either a duration or an until expression", pointer)
        until = self.expression(spec.until, f"{pointer}/until")
        if until is not None:
            return ExpressionTimerStep(spec.name, spec.description, until_expression=until)
        return TimerStep(spec.name, spec.description, duration=self.duration(spec.duration, f"{pointer}/duration"))


_KNOWN: tuple[Any, ...] = (
    validators.Draft4Validator,
    validators.Draft6Validator,
    validators.Draft7Validator,
    validators.Draft201909Validator,
    validators.Draft202012Validator,
)
_DRAFT7: Any = validators.Draft7Validator
"""The dialect whose forms :func:`plainly_valid` may accept without asking jsonschema."""
_DIALECTS: dict[str, Any] = {str(c.ID_OF(c.META_SCHEMA)).rstrip("#"): c for c in _KNOWN}
_CHECKERS: dict[Any, Any] = {}


def _schema_checker(form: dict[str, Any]) -> Any:
    """A validator of the form's dialect against its metaschema (draft 7 unless ``$schema`` names
    another), or None when ``$schema`` names no dialect known here."""
    dialect = form.get("$schema", "http://json-schema.org/draft-07/schema")
    cls = _DIALECTS.get(dialect.rstrip("#")) if type(dialect) is str else None
    if cls is None:
        return None
    checker = _CHECKERS.get(cls)
    if checker is None:  # built once per dialect: building one costs more than using it
        checker = _CHECKERS[cls] = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    return checker
