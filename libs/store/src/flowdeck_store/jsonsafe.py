"""Turning engine values (events, results, data) into JSON for the database."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID


def _default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


dumps = json.JSONEncoder(default=_default, separators=(",", ":"), allow_nan=False).encode
"""``json.dumps`` that also takes enums, datetimes, UUIDs, decimals, sets and dataclasses (one
encoder for every call: ``json.dumps`` with options builds a new one each time)."""


class JsonText(str):
    """A value already encoded as JSON text: the PostgreSQL writer sends it as it is (no second
    ``dumps``), other dialects decode it for their JSON columns."""

    __slots__ = ()


def json_text(value: Any) -> JsonText:
    """``value`` encoded once, as :data:`dumps` does; raises TypeError or ValueError like it."""
    return JsonText(dumps(value))


def result_text(value: Any) -> JsonText:
    """A step result for the record as JSON text: as JSON when it can be, else its ``repr``."""
    try:
        return json_text(value)
    except (TypeError, ValueError):
        return json_text({"repr": repr(value)})


_EVENT_FIELDS: dict[type, tuple[str, ...]] = {}


def event_text(event: Any) -> JsonText:
    """A workflow event as JSON text: its fields by name (ids and times as strings, enums as their
    values, tuples as lists), encoded in one pass."""
    kind = type(event)
    names = _EVENT_FIELDS.get(kind)
    if names is None:
        names = _EVENT_FIELDS[kind] = tuple(f.name for f in dataclasses.fields(event))
    return JsonText(dumps({name: getattr(event, name) for name in names}))
