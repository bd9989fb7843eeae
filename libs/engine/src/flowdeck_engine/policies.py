"""Retry policy and engine limits: data, not control flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from flowdeck_engine.exceptions import ValidationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing step is tried, and how long to wait between attempts.

    ``max_attempts`` counts the first attempt: 1 means no retry. The wait before attempt
    ``n + 1`` is ``initial_interval * backoff_coefficient ** (n - 1)``, capped by
    ``maximum_interval``. Errors whose class name is in ``non_retryable_errors`` fail at once.
    """

    max_attempts: int = 1
    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = timedelta(minutes=10)
    non_retryable_errors: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValidationError("max_attempts must be at least 1")
        if self.backoff_coefficient < 1:
            raise ValidationError("backoff_coefficient must be at least 1")
        if self.initial_interval < timedelta(0):
            raise ValidationError("initial_interval must not be negative")

    def delay_after(self, attempt: int) -> timedelta:
        """The wait between attempt ``attempt`` (1-based) and the next one."""
        delay = self.initial_interval * (self.backoff_coefficient ** (attempt - 1))
        if self.maximum_interval is not None and delay > self.maximum_interval:
            return self.maximum_interval
        return delay

    def allows_retry(self, attempt: int, error_type: str) -> bool:
        """Whether a failure of attempt ``attempt`` with ``error_type`` is tried again."""
        return attempt < self.max_attempts and error_type not in self.non_retryable_errors


NO_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Caps that protect the engine from runaway definitions."""

    max_transitions: int = 10_000
    """Events an instance may apply before it is failed as an endless loop."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """What happens to a human task still open ``after`` it was opened.

    With ``reassign_to`` (candidate groups), the task is reassigned to those groups and stays
    open. Without, the task is closed and the workflow goes on along the step's edges marked
    ``on_timeout=True``.
    """

    after: timedelta
    reassign_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.after <= timedelta(0):
            raise ValidationError("an escalation's `after` must be positive")
