"""Platform actions (registered in Python by whoever runs Flowdeck) and the platform's settings."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from flowdeck_engine.documents.http import HttpPolicy
from flowdeck_engine.documents.limits import DEFAULT_LIMITS, DocumentLimits
from flowdeck_engine.documents.model import NAME_PATTERN
from flowdeck_engine.exceptions import ValidationError

if TYPE_CHECKING:
    from flowdeck_engine.context import WorkflowContext
    from flowdeck_engine.documents.http import HttpTransport

ActionFunction: TypeAlias = Callable[["WorkflowContext", dict[str, Any]], Awaitable[Any]]
"""``await action(context, inputs)``: ``inputs`` are the values of the step's ``input``
expressions; the result is stored at the step's ``result_key`` when it has one."""

_NAME: Final = re.compile(NAME_PATTERN)


class ActionRegistry:
    """Platform actions by name: documents call them with ``{type: platform, name: ...}``."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionFunction] = {}

    def register(self, name: str, function: ActionFunction) -> None:
        """Register ``function`` as the action ``name``. Raises :class:`ValidationError` when the
        name is not a valid name or is taken."""
        if len(name) > 100 or not _NAME.match(name):
            raise ValidationError(f"{name!r} is not a valid action name")
        if name in self._actions:
            raise ValidationError(f"the action {name!r} is already registered")
        self._actions[name] = function

    def action(self, name: str) -> Callable[[ActionFunction], ActionFunction]:
        """Decorator form of :meth:`register`."""

        def decorate(function: ActionFunction) -> ActionFunction:
            self.register(name, function)
            return function

        return decorate

    def get(self, name: str) -> ActionFunction | None:
        """The action registered as ``name``, or None."""
        return self._actions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._actions)


@dataclass(frozen=True, slots=True)
class Platform:
    """What a deployment decides for the documents it accepts.

    ``actions`` are the platform actions documents may call; None (the default) means "not known
    here": names are then not checked (as in ``flowdeck validate``), and a step naming one fails
    when it runs. ``transport`` sends the ``http`` actions' calls (a :class:`StdlibTransport`
    with ``http`` as its policy when None).
    """

    actions: ActionRegistry | None = None
    http: HttpPolicy = field(default_factory=HttpPolicy)
    transport: HttpTransport | None = None
    limits: DocumentLimits = DEFAULT_LIMITS
