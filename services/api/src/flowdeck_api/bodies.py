"""Requests are checked at the edge, before anything parses them into a schema or stores them.

msgspec raises RecursionError on JSON nested about a thousand deep (Litestar then answers 500),
and PostgreSQL rejects NUL characters in text and jsonb (asyncpg then fails mid-query). So:

- every request body of a JSON route is decoded once here, whatever its ``Content-Type`` claims
  (Litestar parses a ``JSONBody`` as JSON regardless of the header, so skipping other media types
  would skip the checks): malformed or absurdly deep JSON is a 400, and a depth beyond the limit,
  a NUL character or a non-finite number a 422, each with a JSON pointer to the offending place.
  Routes that read their body themselves say so with ``opt={"raw_body": True}``.
- a NUL character in a path or query parameter is a 400 naming the parameter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from flowdeck_api.errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

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


def check_parameters(request: Request[Any, Any, Any]) -> None:
    """Refuse NUL characters in the path and query parameters (400 naming each)."""
    named = [(name, value) for name, value in request.path_params.items() if isinstance(value, str)]
    named += list(request.query_params.multi_items())
    bad = sorted({name for name, value in named if "\x00" in name or "\x00" in value})
    if bad:
        errors = [
            {"code": "nul_character", "parameter": name.replace("\x00", "\\u0000"), "message": "contains NUL"}
            for name in bad
        ]
        raise ApiError(400, "invalid_parameter", "parameters must not contain NUL characters", extra={"errors": errors})


def checked_json(max_depth: int) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A ``before_request`` hook: checks the parameters and, unless the route reads it raw, the JSON body."""

    async def check(request: Request[Any, Any, Any]) -> None:
        check_parameters(request)
        if request.method not in _WITH_BODY or request.route_handler.opt.get("raw_body"):
            return
        body = await request.body()
        if body:
            decode_json(body, max_depth)

    return check
