"""Opaque cursors for keyset pagination, and page-size clamping."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from flowdeck_api.errors import ApiError


def encode_cursor(*values: Any) -> str:
    """An opaque cursor holding ``values`` (the sort key of the last item of a page)."""
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor` (400 when it is not one)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from None
    if not isinstance(values, list) or len(values) != size:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out")
    return values


def decode_time_and_id(cursor: str) -> tuple[datetime, UUID]:
    """The (aware time, id) sort key of a cursor made by :func:`encode_cursor` (400 when it is not one)."""
    at, last = decode_cursor(cursor, 2)
    try:
        if not (isinstance(at, str) and isinstance(last, str)):
            raise ValueError
        at_time, last_id = datetime.fromisoformat(at), UUID(last)
    except ValueError:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from None
    if at_time.tzinfo is None:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out")
    return at_time, last_id


def clamp(limit: int | None, default: int, maximum: int) -> int:
    """A page size within 1..``maximum``."""
    return default if limit is None else max(1, min(limit, maximum))
