"""The engine steps documents compile to: subclasses of the engine's base steps whose behaviour
is data (compiled expressions, an action's settings), so they can be exported again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from flowdeck_engine.documents.errors import HttpCallError
from flowdeck_engine.documents.http import HttpRequest
from flowdeck_engine.documents.limits import DEFAULT_LIMITS
from flowdeck_engine.documents.pointers import merge_into, read
from flowdeck_engine.documents.tree import tree_problems
from flowdeck_engine.exceptions import StepExecutionError
from flowdeck_engine.steps import BaseHumanStep, BaseMachineStep, TimerStep

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta

    from flowdeck_engine.conditions import Condition
    from flowdeck_engine.context import WorkflowContext
    from flowdeck_engine.documents.actions import ActionFunction
    from flowdeck_engine.documents.http import HttpTransport
    from flowdeck_engine.policies import RetryPolicy


def _values(expressions: Mapping[str, Condition], data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: expression.evaluate(data) for key, expression in expressions.items()}


class SetValuesStep(BaseMachineStep):
    """Sets context keys to the values of expressions, all evaluated against the context as it was."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        *,
        values: Mapping[str, Condition],
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        super().__init__(name, description, retry_policy=retry_policy, timeout=timeout)
        self.values = dict(values)

    async def execute(self, context: WorkflowContext) -> None:
        """Evaluate every expression, then store the values."""
        for key, value in _values(self.values, context.data).items():
            context.set(key, value)


class EmitEventStep(BaseMachineStep):
    """Publishes the event ``event`` with a payload computed from expressions."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        *,
        event: str,
        payload: Mapping[str, Condition],
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        super().__init__(name, description, retry_policy=retry_policy, timeout=timeout)
        self.event = event
        self.payload = dict(payload)

    async def execute(self, context: WorkflowContext) -> None:
        """Publish the event (it reaches the event bus when the step succeeds)."""
        context.emit(self.event, _values(self.payload, context.data))


class HttpCallStep(BaseMachineStep):
    """Calls an HTTPS endpoint with a JSON body taken from context paths; merges the JSON
    response at ``result_path``. A 4xx answer fails the step at once; other failures are retried
    as the step's retry policy allows."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        *,
        url: str,
        method: str,
        body: Mapping[str, str],
        result_path: str | None,
        request_timeout: timedelta,
        transport: HttpTransport,
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        super().__init__(name, description, retry_policy=retry_policy, timeout=timeout)
        self.url = url
        self.method = method
        self.body = dict(body)
        self.result_path = result_path
        self.request_timeout = request_timeout
        self.transport = transport

    async def execute(self, context: WorkflowContext) -> int:
        """Make the call; return the response status."""
        payload = (
            None
            if self.method == "GET"
            else msgspec.json.encode({key: read(context.data, path) for key, path in self.body.items()})
        )
        request = HttpRequest(
            self.method, self.url, payload, self.request_timeout.total_seconds(), context.idempotency_key
        )
        response = await self.transport.send(request)
        if not 200 <= response.status < 300:
            raise HttpCallError(f"{self.method} answered {response.status}", non_retryable=response.status < 500)
        if self.result_path is not None:
            try:
                value = json.loads(response.body, parse_constant=float) if response.body.strip() else None
            except ValueError:
                raise HttpCallError("the response is not JSON", non_retryable=True) from None
            if tree_problems([value], DEFAULT_LIMITS):
                raise HttpCallError("the response holds values that cannot be stored", non_retryable=True)
            try:
                merge_into(context, self.result_path, value)
            except ValueError as exc:
                raise HttpCallError(str(exc), non_retryable=True) from None
        return response.status


class ExternalJobStep(BaseMachineStep):
    """A job of type ``job_type`` that the tenant's own workers fetch and complete through the API.

    It waits like a webhook step: the completion's payload is stored at ``result_key`` (merged at
    the top level when None); after ``timeout`` the step takes its ``on_timeout`` edges, or fails.
    """

    awaits_callback: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        description: str | None = None,
        *,
        job_type: str,
        timeout: timedelta | None = None,
        result_key: str | None = None,
    ) -> None:
        super().__init__(name, description, timeout=timeout)
        self.job_type = job_type
        self.result_key = result_key


class PlatformActionStep(BaseMachineStep):
    """Calls the platform action ``action`` with inputs computed from expressions."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        *,
        action: str,
        inputs: Mapping[str, Condition],
        result_key: str | None,
        function: ActionFunction | None,
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        super().__init__(name, description, retry_policy=retry_policy, timeout=timeout)
        self.action = action
        self.inputs = dict(inputs)
        self.result_key = result_key
        self.function = function

    async def execute(self, context: WorkflowContext) -> Any:
        """Call the action; store its result at ``result_key``."""
        if self.function is None:
            raise StepExecutionError(self.name, f"the platform action {self.action!r} is not available")
        result = await self.function(context, _values(self.inputs, context.data))
        if self.result_key is not None:
            context.set(self.result_key, result)
        return result


class HumanTaskStep(BaseHumanStep):
    """A human step whose assignee may be computed by an expression (``assignee_expression``)."""

    assignee_expression: Condition | None = None

    def __init__(
        self, name: str, description: str | None = None, *, assignee_expression: Condition | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name, description, **kwargs)
        self.assignee_expression = assignee_expression

    def resolve_assignee(self, data: Mapping[str, Any]) -> str | None:
        """The expression's value (a user id, or None for "the candidate groups"), else ``assignee``."""
        if self.assignee_expression is None:
            return self.assignee
        value = self.assignee_expression.evaluate(data)
        if value is not None and type(value) is not str:
            raise StepExecutionError(self.name, "the assignee expression did not give a user id (a string)")
        return value


class ExpressionTimerStep(TimerStep):
    """A timer that fires at the time an expression gives: an ISO 8601 date-time with a time zone."""

    def __init__(self, name: str, description: str | None = None, *, until_expression: Condition) -> None:
        super().__init__(name, description)
        self.until_expression = until_expression

    def fire_at(self, data: Mapping[str, Any], now: datetime) -> datetime:
        """Evaluate the expression; the time it gives."""
        value = self.until_expression.evaluate(data)
        when = _datetime(value)
        if when is None:
            raise StepExecutionError(
                self.name, "the timer expression did not give an ISO 8601 date-time with a time zone"
            )
        return when.astimezone(UTC)


def _datetime(value: Any) -> datetime | None:
    if type(value) is not str:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
