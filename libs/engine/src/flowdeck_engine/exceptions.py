"""The engine's exception tree.

Every error raised across the package boundary is a :class:`WorkflowsError` carrying a human
readable ``detail`` and the facts (names, ids) as attributes. ``retryable`` says whether trying
the same operation again may succeed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID


class WorkflowsError(Exception):
    """Root of every error raised by Flowdeck's engine."""

    retryable: bool = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class WorkflowNotFoundError(WorkflowsError, LookupError):
    """No registered definition has this name (and version)."""

    def __init__(self, name: str, version: str | None = None) -> None:
        where = f"{name!r} version {version!r}" if version else repr(name)
        super().__init__(f"workflow {where} is not registered")
        self.name = name
        self.version = version


class DuplicateDefinitionError(WorkflowsError):
    """A definition with this name and version is already registered (versions are immutable)."""

    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"workflow {name!r} version {version!r} is already registered")
        self.name = name
        self.version = version


class InstanceNotFoundError(WorkflowsError, LookupError):
    """No workflow instance has this id."""

    def __init__(self, instance_id: UUID) -> None:
        super().__init__(f"workflow instance {instance_id} not found")
        self.instance_id = instance_id


class InvalidTransitionError(WorkflowsError, ValueError):
    """The requested action does not apply to the instance in its current state."""

    def __init__(self, instance_id: UUID, action: str, reason: str) -> None:
        super().__init__(f"cannot {action} workflow instance {instance_id}: {reason}")
        self.instance_id = instance_id
        self.action = action
        self.reason = reason


class TaskNotFoundError(InvalidTransitionError):
    """The instance has no open human task (or callback) for this step."""

    def __init__(self, instance_id: UUID, step_name: str, action: str = "complete task") -> None:
        super().__init__(instance_id, action, f"no open task for step {step_name!r}")
        self.step_name = step_name


class ConcurrencyError(WorkflowsError):
    """The instance changed since it was loaded (optimistic version check failed)."""

    retryable = True

    def __init__(self, instance_id: UUID, expected_version: int) -> None:
        super().__init__(
            f"workflow instance {instance_id} was changed concurrently (expected version {expected_version})"
        )
        self.instance_id = instance_id
        self.expected_version = expected_version


class StepExecutionError(WorkflowsError):
    """A step failed. ``error_type`` names the original exception's class."""

    def __init__(self, step_name: str, message: str, *, error_type: str = "StepExecutionError") -> None:
        super().__init__(f"step {step_name!r} failed: {error_type}: {message}")
        self.step_name = step_name
        self.message = message
        self.error_type = error_type


class StepTimeoutError(StepExecutionError):
    """A step did not finish within its timeout."""

    retryable = True

    def __init__(self, step_name: str, timeout: float) -> None:
        super().__init__(step_name, f"did not finish within {timeout:g}s", error_type="StepTimeoutError")
        self.timeout = timeout


class NoPathError(StepExecutionError):
    """A step finished but none of its outgoing edges applies, so the instance cannot go on."""

    def __init__(self, step_name: str) -> None:
        super().__init__(step_name, "no outgoing edge condition matched", error_type="NoPathError")


class TransitionLimitError(WorkflowsError):
    """An instance exceeded its cap on transitions (an endless loop)."""

    def __init__(self, instance_id: UUID, limit: int) -> None:
        super().__init__(f"workflow instance {instance_id} exceeded {limit} transitions")
        self.instance_id = instance_id
        self.limit = limit


class ValidationError(WorkflowsError, ValueError):
    """A definition (or document) is invalid. ``problems`` lists every problem found."""

    def __init__(self, detail: str, problems: Sequence[Any] = ()) -> None:
        super().__init__(detail)
        self.problems = list(problems)


class ConditionError(WorkflowsError):
    """Root of the condition evaluator's errors. Messages never echo context values."""


class ConditionSyntaxError(ConditionError, ValidationError):
    """A condition is not valid in the condition language (parse error or forbidden construct)."""

    def __init__(self, source: str, reason: str) -> None:
        ValidationError.__init__(self, f"invalid condition: {reason}")
        self.source = source
        self.reason = reason


class ConditionLimitError(ConditionSyntaxError):
    """A condition exceeds a size cap (length, node count, depth, literal size)."""


class ConditionEvaluationError(ConditionError):
    """A condition failed while evaluating (type mismatch, division by zero, operand too large)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"condition {source!r} failed: {reason}")
        self.source = source
        self.reason = reason
