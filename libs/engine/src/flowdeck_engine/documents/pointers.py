"""JSON pointers (RFC 6901): building them for problems, reading and writing the context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowdeck_engine.context import WorkflowContext


def escape(token: str | int) -> str:
    """One reference token, escaped (``a/b`` -> ``a~1b``)."""
    if type(token) is int:
        return str(token)
    text = str(token)
    return text.replace("~", "~0").replace("/", "~1") if "~" in text or "/" in text else text


def tokens(pointer: str) -> list[str]:
    """The unescaped reference tokens of ``pointer`` (``""`` has none)."""
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def read(data: Mapping[str, Any], pointer: str) -> Any:
    """The value at ``pointer`` in ``data``, or None when there is none."""
    value: Any = data
    for token in tokens(pointer):
        if isinstance(value, dict):
            value = value.get(token)
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return None
    return value


def merge_into(context: WorkflowContext, pointer: str, value: Any) -> None:
    """Merge ``value`` into the context at ``pointer``.

    Objects along the way are copied, never changed in place, and created when missing. At the
    end an object merges into an existing object; anything else replaces what was there. At the
    root (``""``) ``value`` must be an object. Raises ``ValueError`` when the way is blocked by a
    value that is not an object.
    """
    path = tokens(pointer)
    if not path:
        if not isinstance(value, dict):
            raise ValueError("only an object can be merged into the whole context")
        for key, item in value.items():
            context.set(key, item)
        return
    context.set(path[0], _merge(context.get(path[0]), path[1:], value))


def _merge(current: Any, path: list[str], value: Any) -> Any:
    if not path:
        return {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value
    if current is None:
        current = {}
    if not isinstance(current, dict):
        raise ValueError("the result path runs through a value that is not an object")
    return {**current, path[0]: _merge(current.get(path[0]), path[1:], value)}
