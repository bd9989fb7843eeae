"""Turning engine values (events, results, data) into JSON for the database."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from functools import partial
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


dumps = partial(json.dumps, default=_default, separators=(",", ":"), allow_nan=False)
"""``json.dumps`` that also takes enums, datetimes, UUIDs, decimals, sets and dataclasses."""


def to_json(value: Any) -> Any:
    """``value`` as plain JSON types (lists, dicts, strings, numbers, booleans, None)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.loads(dumps(value))


def result_json(value: Any) -> Any:
    """A step result for the record: as JSON when it can be, else its ``repr`` (it is only a record)."""
    try:
        return to_json(value)
    except (TypeError, ValueError):
        return {"repr": repr(value)}


def event_json(event: Any) -> dict[str, Any]:
    """A workflow event (a slotted dataclass of ids, names, times, enums, tuples, JSON data) as JSON."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if value is None or isinstance(value, str | int | float | bool):
            out[f.name] = value
        elif isinstance(value, Enum):
            out[f.name] = value.value
        elif isinstance(value, datetime):
            out[f.name] = value.isoformat()
        elif isinstance(value, UUID):
            out[f.name] = str(value)
        elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            out[f.name] = list(value)
        else:
            out[f.name] = to_json(value)
    return out
