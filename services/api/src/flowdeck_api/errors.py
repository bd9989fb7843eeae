"""The one place where exceptions become HTTP responses: RFC 9457 problem details with stable codes.

Every error body has ``type``, ``title``, ``status``, ``detail`` and ``code`` (stable, for
programs), plus ``instance`` (the request path) and, where useful, ``errors`` (a list of
problems, each with a JSON pointer). Authentication failures are a bare 401 with no detail.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
from litestar import Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi import ResponseSpec
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from flowdeck_api.auth import AuthError
from flowdeck_engine import (
    ConcurrencyError,
    InstanceNotFoundError,
    InvalidTransitionError,
    TaskNotFoundError,
    ValidationError,
    WorkflowNotFoundError,
)
from flowdeck_engine.documents import DocumentError

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar import Request

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """An error with an HTTP status and a stable ``code``; ``extra`` goes into the body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    """The 404 for anything missing or belonging to another tenant (the two look the same)."""
    return ApiError(404, "not_found", f"{what} not found")


def problem(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    detail: str = "",
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    """A problem-details response."""
    body: dict[str, Any] = {
        "type": f"https://flowdeck.dev/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    body.update(extra or {})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _api(request: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return problem(request, exc.status, exc.code, exc.detail, extra=exc.extra, headers=exc.headers)


def _unauthorized(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return problem(request, 401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


def _forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return problem(request, 403, "forbidden", "your roles do not allow this")


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    return problem(request, 400, "invalid_request", str(exc.detail), extra={"errors": errors})


def _document(request: Request[Any, Any, Any], exc: DocumentError) -> Response[dict[str, Any]]:
    errors = [{"code": p.code, "pointer": p.pointer, "message": p.message} for p in exc.problems]
    return problem(request, 422, "invalid_document", exc.detail, extra={"errors": errors})


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 429: "rate_limited"}.get(
        status, "http_error"
    )
    return problem(request, status, code, str(exc.detail) if status < 500 else "", headers=exc.headers)


def _status(status: int, code: str) -> Callable[[Request[Any, Any, Any], Exception], Response[dict[str, Any]]]:
    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
        detail = getattr(exc, "detail", None) or str(exc)
        return problem(request, status, code, detail)

    return handler


def _unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("database unavailable: %s", type(exc).__name__)
    return problem(request, 503, "unavailable", "the database is unavailable; try again", headers={"Retry-After": "1"})


def _invalid_value(request: Request[Any, Any, Any], exc: StatementError) -> Response[dict[str, Any]]:
    log.warning("the database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
    return problem(request, 400, "invalid_value", "a value in the request cannot be used here")


def _database(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[dict[str, Any]]:
    # SQLSTATE class 22 ("data exception": a NUL byte, a malformed uuid, a date out of range) is a
    # value the request carried, not an outage: answering 503 would invite retrying it forever.
    if str(getattr(exc.orig, "sqlstate", None) or "").startswith("22"):
        return _invalid_value(request, exc)
    return _unavailable(request, exc)


def _statement(request: Request[Any, Any, Any], exc: StatementError) -> Response[dict[str, Any]]:
    # Raised before the query reaches the database, when a bound value cannot be converted (a
    # datetime without a time zone, a date out of range): request values, since ours are typed.
    if isinstance(exc.orig, TypeError | ValueError | OverflowError):
        return _invalid_value(request, exc)
    return _internal(request, exc)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, 500, "internal_error", "an internal error occurred")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ApiError: _api,
    AuthError: _unauthorized,
    NotAuthorizedException: _unauthorized,
    PermissionDeniedException: _forbidden,
    ValidationException: _validation,
    DocumentError: _document,
    NotFoundException: _status(404, "not_found"),
    WorkflowNotFoundError: _status(404, "workflow_not_found"),
    InstanceNotFoundError: _status(404, "not_found"),
    TaskNotFoundError: _status(409, "task_not_open"),
    InvalidTransitionError: _status(409, "invalid_transition"),
    ConcurrencyError: _status(409, "conflict"),
    ValidationError: _status(422, "invalid"),
    OperationalError: _unavailable,
    PoolTimeoutError: _unavailable,  # every pooled connection busy for 10 s
    DBAPIError: _database,
    # Connecting, asyncpg raises its own errors unwrapped: refused or reset (OSError), "the database
    # system is starting up" or "too many connections" (PostgresError), a dropped link (InterfaceError).
    OSError: _unavailable,
    asyncpg.PostgresError: _unavailable,
    asyncpg.InterfaceError: _unavailable,
    StatementError: _statement,
    HTTPException: _http,
    Exception: _internal,
}
"""Exception handlers, most specific first (Litestar picks by the exception's MRO)."""


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem-details body (``application/problem+json``)."""

    type: str
    title: str
    status: int
    code: str
    instance: str
    detail: str | None = None
    errors: list[dict[str, str]] | None = None


_DESCRIPTIONS = {
    400: "Malformed request (invalid JSON, bad cursor, bad parameters)",
    401: "Missing or invalid bearer token",
    403: "Your roles do not allow this",
    404: "Not found (or another tenant's)",
    409: "Conflicts with the current state (already completed, claimed, exists)",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid content: `errors` lists every problem with a JSON pointer",
    429: "Rate limited or over a cap: see Retry-After",
    503: "A dependency is unavailable: try again",
}


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI response specs for the problem-details errors a route answers (401 always)."""
    return {
        status: ResponseSpec(data_container=Problem, description=_DESCRIPTIONS[status], media_type=PROBLEM_JSON)
        for status in sorted({401, *statuses})
    }
