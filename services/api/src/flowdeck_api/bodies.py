"""Request bodies are checked before anything parses them into a schema or stores them.

msgspec raises RecursionError on JSON nested about a thousand deep (Litestar then answers 500),
PostgreSQL rejects NUL characters in text and jsonb, and JSON has no NaN or Infinity (but
``1e999`` decodes to infinity). So every JSON body is decoded once here: malformed or absurdly
deep JSON is a 400, and a depth beyond the limit, a NUL character or a non-finite number a 422,
each with a JSON pointer to the offending place.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from flowdeck_api.errors import ApiError

if TYPE_CHECKING:
    from litestar import Request

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _escape(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def find_problem(value: Any, max_depth: int) -> tuple[str, str, str] | None:
    """The first (code, pointer, message) that makes ``value`` unacceptable, or None."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, pointer, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "nul_character", pointer, "strings must not contain NUL characters"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "non_finite_number", pointer, "numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                return "too_deep", pointer, f"JSON is nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if "\x00" in key:
                        return "nul_character", f"{pointer}/{_escape(key)}", "keys must not contain NUL characters"
                    stack.append((child, f"{pointer}/{_escape(key)}", depth + 1))
            else:
                stack.extend((child, f"{pointer}/{i}", depth + 1) for i, child in enumerate(item))
    return None


def decode_json(body: bytes, max_depth: int) -> Any:
    """Decode and check a JSON body (see the module docs)."""
    try:
        value = msgspec.json.decode(body)
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    found = find_problem(value, max_depth)
    if found is not None:
        code, pointer, message = found
        raise ApiError(422, code, message, extra={"errors": [{"code": code, "pointer": pointer, "message": message}]})
    return value


def checked_json(max_depth: int) -> Any:
    """A ``before_request`` hook that checks every JSON request body."""

    async def check(request: Request[Any, Any, Any]) -> None:
        if request.method not in _WITH_BODY:
            return
        media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return
        body = await request.body()
        if body:
            decode_json(body, max_depth)

    return check
