"""Limits on instance starts: a per-tenant rate shared by every API process, and an overload gate.

The rate is a GCRA (a token bucket kept as one timestamp): a tenant may start ``per_minute``
instances at once and then one every ``60 / per_minute`` seconds; a refused start does not use up
anything. With Redis configured the bucket lives in Redis (one key per tenant, updated by a script
that reads Redis's own clock, so every API process shares it); embedded, or while Redis does not
answer, each process keeps its own.

The gate caps the starts one process serves at a time: past it, starts are refused at once with a
503 (``overloaded``) before they reach the database, so that task completions, callbacks and reads,
which pass no gate, keep going through.

Both apply to the routes marked ``opt={"start": True}``, after authentication (they need the tenant).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import ASGIMiddleware
from redis.exceptions import RedisError

from flowdeck_api.auth import Principal
from flowdeck_api.errors import ApiError
from flowdeck_engine import ValidationError
from flowdeck_runtime.pipelining import Pipelined, with_script

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.types import ASGIApp, Receive, Scope, Send
    from redis.asyncio import Redis

    from flowdeck_runtime.settings import LimitSettings

log = logging.getLogger(__name__)
KEY_PREFIX = "flowdeck:limits:starts:"

# KEYS[1]: the tenant's bucket; ARGV: the period and the emission interval, in milliseconds.
# Returns "0" when the start may go ahead (and records it), else the milliseconds to wait.
_GCRA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local period = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - period - now
if wait > 0 then return string.format('%.3f', wait) end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
return '0'
"""


class RateLimiter(Protocol):
    """Decides whether a tenant may start one more instance now."""

    async def acquire(self, key: str) -> float:
        """0 when the start may go ahead (it is counted), else the seconds until it may."""
        ...


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` events per ``period`` seconds, all of them at once if they come together."""

    limit: int
    period: float = 60.0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise ValidationError(f"a rate needs a limit of at least 1 and a period above 0, not {self}")

    @property
    def interval(self) -> float:
        """The seconds one event uses up."""
        return self.period / self.limit


class LocalRateLimiter:
    """The GCRA in this process (embedded mode, and the fallback while Redis does not answer)."""

    def __init__(self, rate: Rate, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.rate = rate
        self._clock = clock
        self._max_keys = max_keys
        self._tat: dict[str, float] = {}

    async def acquire(self, key: str) -> float:
        """0 when the start may go ahead (it is counted), else the seconds until it may."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        next_tat = tat + self.rate.interval
        wait = next_tat - self.rate.period - now
        if wait > 0:
            return wait
        if len(self._tat) >= self._max_keys:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        self._tat[key] = next_tat
        return 0.0


class RedisRateLimiter:
    """The GCRA in Redis, shared by every API process; the local one while Redis fails."""

    def __init__(self, redis: Redis, rate: Rate, *, fallback: LocalRateLimiter | None = None) -> None:
        self.rate = rate
        self._redis = redis
        self._calls = Pipelined(redis)  # concurrent starts' checks go to Redis together
        self._fallback = fallback or LocalRateLimiter(rate)
        self._args = [int(rate.period * 1000), round(rate.interval * 1000, 3)]
        self._warned_at = float("-inf")

    async def _check(self, key: str) -> float:
        """The script's answer for ``key``, in a pipeline with other starts' (loaded on first use
        and again when Redis lost it)."""
        name, period, interval = KEY_PREFIX + key, *self._args
        (wait_ms,) = await with_script(
            self._redis, _GCRA, lambda sha: self._calls.run(lambda pipe: pipe.evalsha(sha, 1, name, period, interval))
        )
        return float(wait_ms)

    async def acquire(self, key: str) -> float:
        """0 when the start may go ahead (it is counted), else the seconds until it may."""
        try:
            wait_ms = await self._check(key)
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at > 60:  # once a minute, not once a request
                self._warned_at = time.monotonic()
                log.warning("rate limits fall back to this process: Redis failed with %s", type(exc).__name__)
            return await self._fallback.acquire(key)
        return wait_ms / 1000


class InFlightGate:
    """Counts the starts this process is serving; refuses more than ``limit`` at a time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> bool:
        """Take a place (True), or False when every place is taken."""
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        """Give a place back."""
        self.in_flight -= 1


@dataclass(frozen=True, slots=True)
class StartLimits:
    """What guards the start routes: the overload gate, then the tenant's rate."""

    gate: InFlightGate
    rate: RateLimiter

    @classmethod
    def from_settings(cls, limits: LimitSettings, redis: Redis | None) -> StartLimits:
        """Shared through ``redis`` when there is one, else kept in this process."""
        rate = Rate(limits.starts_per_minute)
        limiter: RateLimiter = RedisRateLimiter(redis, rate) if redis is not None else LocalRateLimiter(rate)
        return cls(InFlightGate(limits.max_starts_in_flight), limiter)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class StartLimitMiddleware(ASGIMiddleware):
    """Applies the app's :class:`StartLimits` (``app.state.start_limits``) to routes marked ``opt={"start": True}``.

    It keeps no state of its own: Litestar copies middleware when it registers routes.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Refuse the start (503 overloaded, 429 rate_limited) or serve it inside the gate."""
        if not scope["route_handler"].opt.get("start"):
            await next_app(scope, receive, send)
            return
        limits: StartLimits = Litestar.from_scope(scope).state.start_limits
        if not limits.gate.enter():
            raise ApiError(503, "overloaded", "too many starts in progress; try again", headers=_retry_after(1))
        try:
            user = scope.get("user")
            if not isinstance(user, Principal):
                raise NotAuthorizedException()
            wait = await limits.rate.acquire(str(user.tenant_id))
            if wait > 0:
                raise ApiError(
                    429, "rate_limited", "the tenant is starting instances too fast", headers=_retry_after(wait)
                )
            await next_app(scope, receive, send)
        finally:
            limits.gate.leave()
