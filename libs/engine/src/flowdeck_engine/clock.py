"""Clocks: where the engine's shells read the time and schedule wake-ups.

The kernel never reads a clock; the shells do, through this port, so tests run on a
:class:`FakeClock` that moves only when told to.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Scheduled(Protocol):
    """A wake-up that may still be called off."""

    def cancel(self) -> None:
        """Call the wake-up off (no effect once it ran)."""
        ...


class Clock(Protocol):
    """The time, and wake-ups at a time."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def call_at(self, when: datetime, callback: Callable[[], Awaitable[None]]) -> Scheduled:
        """Run ``callback`` at ``when`` (at once if that has passed)."""
        ...


class SystemClock:
    """The real time; wake-ups run as tasks on the running event loop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def call_at(self, when: datetime, callback: Callable[[], Awaitable[None]]) -> Scheduled:
        """Schedule ``callback`` on the running loop."""
        delay = max(0.0, (when - self.now()).total_seconds())
        return asyncio.get_running_loop().call_later(delay, self._spawn, callback)

    def _spawn(self, callback: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(_logged(callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _logged(callback: Callable[[], Awaitable[None]]) -> None:
    try:
        await callback()
    except Exception:
        log.exception("scheduled wake-up failed")


class _Entry:
    __slots__ = ("callback", "canceled", "when")

    def __init__(self, when: datetime, callback: Callable[[], Awaitable[None]]) -> None:
        self.when = when
        self.callback = callback
        self.canceled = False

    def cancel(self) -> None:
        self.canceled = True


class FakeClock:
    """A clock for tests: time stands still until :meth:`advance` moves it and runs what is due."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._queue: list[tuple[datetime, int, _Entry]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    def call_at(self, when: datetime, callback: Callable[[], Awaitable[None]]) -> Scheduled:
        """Queue ``callback`` until the clock reaches ``when``."""
        entry = _Entry(when, callback)
        heapq.heappush(self._queue, (when, next(self._order), entry))
        return entry

    @property
    def pending(self) -> int:
        """How many wake-ups wait (not canceled)."""
        return sum(1 for _, _, entry in self._queue if not entry.canceled)

    async def advance(self, delta: timedelta = timedelta(0)) -> None:
        """Move the time forward by ``delta``, running every wake-up that comes due, in time order."""
        target = self._now + delta
        while self._queue and self._queue[0][0] <= target:
            when, _, entry = heapq.heappop(self._queue)
            if entry.canceled:
                continue
            self._now = max(self._now, when)
            await entry.callback()
        self._now = target
