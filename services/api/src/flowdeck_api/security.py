"""Authentication middleware and role guards."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from flowdeck_api.auth import AuthError, Principal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

    from flowdeck_api.auth import TokenVerifier

log = logging.getLogger(__name__)


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Verifies the bearer token of every request (but the excluded paths) into a :class:`Principal`.

    ``verifier`` and ``tenant_active`` are read from the app state (``state.verifier``,
    ``state.tenant_active``); a suspended tenant's tokens are refused like invalid ones.
    """

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        """The principal of the request's bearer token, or a bare 401."""
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise NotAuthorizedException()
        verifier: TokenVerifier = connection.app.state.verifier
        tenant_active: Callable[[Principal], Awaitable[bool]] = connection.app.state.tenant_active
        try:
            principal = await verifier.verify(token.strip())
        except AuthError:
            raise NotAuthorizedException() from None
        except Exception:  # a token that trips a bug in the checks is still refused, never a 500
            log.exception("token verification failed unexpectedly")
            raise NotAuthorizedException() from None
        if not await tenant_active(principal):
            raise NotAuthorizedException()
        return AuthenticationResult(user=principal, auth=token)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated principal of a connection."""
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException()
    return user


def requires(*roles: str) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]:
    """A guard that lets through principals holding one of ``roles``. A coroutine function:
    Litestar runs a plain function guard in its thread pool, a thread hop on every request."""
    allowed = frozenset(roles)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not principal_of(connection).has_any(allowed):
            raise PermissionDeniedException()

    guard.__name__ = f"requires_{'_or_'.join(sorted(allowed))}"
    return guard


ADMIN = requires("admin")
STARTERS = requires("admin", "member", "service")
MEMBERS = requires("admin", "member")
SERVICES = requires("admin", "service")
