"""Opaque cursors for keyset pagination, and page-size clamping."""

from __future__ import annotations

import base64
import json
from typing import Any

from flowdeck_api.errors import ApiError


def encode_cursor(*values: Any) -> str:
    """An opaque cursor holding ``values`` (the sort key of the last item of a page)."""
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor` (400 when it is not one)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out") from None
    if not isinstance(values, list) or len(values) != size:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API gave out")
    return values


def clamp(limit: int | None, default: int, maximum: int) -> int:
    """A page size within 1..``maximum``."""
    return default if limit is None else max(1, min(limit, maximum))
