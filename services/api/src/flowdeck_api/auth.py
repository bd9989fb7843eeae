"""Bearer tokens: verification with pyjwt, keys from a JWKS URL or a development secret.

Every failure is an :class:`AuthError`, which the API answers with a bare 401: no detail tells an
attacker which check failed.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import jwt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from flowdeck_runtime.settings import AuthSettings

ROLES = frozenset({"admin", "member", "service"})


class AuthError(Exception):
    """The request is not authenticated. The reason is for logs only, never for the response."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: from the verified token only."""

    tenant_id: UUID
    user_id: str
    groups: frozenset[str]
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        """Org admins manage definitions and webhooks and see every instance and task."""
        return "admin" in self.roles

    def has_any(self, roles: Iterable[str]) -> bool:
        """Whether the principal holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


class KeySource(Protocol):
    """Finds the verification key for a token's ``kid``."""

    async def key_for(self, kid: str | None) -> Any:
        """The key, or raise :class:`AuthError`."""
        ...


class SecretKeySource:
    """The development shared secret (HS* algorithms)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def key_for(self, kid: str | None) -> str:
        """The secret, whatever the ``kid``."""
        return self._secret


def _fetch_json(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the configured JWKS URL
        body: dict[str, Any] = json.loads(response.read(1_048_576))
        return body


class JwksKeySource:
    """Keys from a JWKS URL, safe against floods of unknown ``kid`` values.

    The key set is fetched off the event loop, refreshed every ``max_age`` seconds (so rotated-out
    keys go away), and an unknown ``kid`` forces at most one refresh per ``min_refresh_interval``;
    between those, unknown kids are refused from a negative cache without any network call.
    """

    def __init__(
        self,
        url: str,
        *,
        max_age: float = 300.0,
        min_refresh_interval: float = 30.0,
        timeout: float = 5.0,
        fetch: Callable[[str, float], dict[str, Any]] = _fetch_json,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._max_age = max_age
        self._min_refresh = min_refresh_interval
        self._timeout = timeout
        self._fetch = fetch
        self._now = monotonic
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._unknown: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        """The key for ``kid``; refreshes the set when it is stale or the kid is new (rate-limited)."""
        if kid is None:
            raise AuthError("token has no kid")
        now = self._now()
        if now - self._fetched_at > self._max_age:
            await self._refresh(now)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if now - self._unknown.get(kid, float("-inf")) < self._min_refresh:
            raise AuthError("unknown kid (negatively cached)")
        if now - self._fetched_at >= self._min_refresh:
            await self._refresh(now)
        elif self._lock.locked():
            async with self._lock:  # a refresh is under way (a key rotation): wait for its keys
                pass
        key = self._keys.get(kid)
        if key is not None:
            return key
        if len(self._unknown) > 10_000:
            self._unknown.clear()
        self._unknown[kid] = now
        raise AuthError("unknown kid")

    async def _refresh(self, now: float) -> None:
        seen = self.fetches
        async with self._lock:
            if self.fetches != seen:
                return  # another request refreshed the set while this one waited
            self._fetched_at = now
            self.fetches += 1
            try:
                raw = await asyncio.to_thread(self._fetch, self._url, self._timeout)
                keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(raw).keys if k.key_id}
            except Exception as exc:  # keep the old keys; a later refresh may succeed
                raise AuthError(f"JWKS fetch failed: {type(exc).__name__}") from None
            self._keys = keys
            self._unknown.clear()


class TokenVerifier:
    """Verifies bearer tokens and turns their claims into a :class:`Principal`.

    A token that verified is remembered (the exact token text, so nothing but the same signed
    bytes matches) until it expires, for at most ``remember_seconds``, and at most
    ``max_remembered`` of them: an application sends the same token with every request, and its
    signature and claims need checking once. ``remember_seconds`` bounds how long a key taken out
    of the key set keeps working for tokens already seen (the key set itself is refreshed every
    few minutes); 0 turns remembering off.
    """

    def __init__(
        self,
        settings: AuthSettings,
        keys: KeySource,
        *,
        remember_seconds: float = 60.0,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._algorithms = list(settings.algorithms)
        self._require = ["exp", "iat", "iss", "aud", "sub", settings.tenant_claim]
        self._remember = remember_seconds
        self._max = max_remembered
        self._clock = clock
        self._seen: dict[str, tuple[float, Principal]] = {}

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`AuthError` for anything else."""
        now = self._clock()
        seen = self._seen.get(token)
        if seen is not None:
            if now < seen[0]:
                return seen[1]
            del self._seen[token]
        principal, expires = await self._verify(token)
        if self._remember > 0:
            if len(self._seen) >= self._max:
                self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
                while len(self._seen) >= self._max:  # still full: the oldest go first
                    del self._seen[next(iter(self._seen))]
            self._seen[token] = (min(expires, now + self._remember), principal)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """The principal of a valid token and when it expires (Unix time)."""
        s = self._settings
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self._algorithms:
                raise AuthError("algorithm not allowed")
            key = await self._keys.key_for(header.get("kid"))
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": self._require, "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(type(exc).__name__) from None
        return _principal(claims, s), float(claims["exp"])


def _principal(claims: dict[str, Any], s: AuthSettings) -> Principal:
    try:
        tenant = UUID(str(claims[s.tenant_claim]))
    except ValueError:
        raise AuthError("tenant claim is not a UUID") from None
    sub = claims["sub"]
    groups = claims.get(s.groups_claim, [])
    roles = claims.get(s.roles_claim, [])
    if not (isinstance(sub, str) and sub and len(sub) <= 256):
        raise AuthError("bad sub")
    if not (isinstance(groups, list) and all(isinstance(g, str) and 0 < len(g) <= 256 for g in groups)):
        raise AuthError("bad groups claim")
    if not (isinstance(roles, list) and roles and all(isinstance(r, str) and r in ROLES for r in roles)):
        raise AuthError("bad roles claim")
    return Principal(tenant, sub, frozenset(groups), frozenset(roles))


def mint_token(
    secret: str,
    *,
    issuer: str,
    audience: str,
    tenant_id: UUID,
    subject: str,
    roles: Iterable[str] = ("member",),
    groups: Iterable[str] = (),
    ttl: timedelta = timedelta(hours=12),
    algorithm: str = "HS256",
) -> str:
    """A development token signed with the shared secret."""
    now = datetime.now(UTC)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": now + ttl,
        "tenant": str(tenant_id),
        "roles": sorted(roles),
        "groups": sorted(groups),
    }
    return jwt.encode(claims, secret, algorithm=algorithm)
