"""Wake-ups for the long polls of ``POST /v1/jobs/fetch``.

PostgreSQL notifies channel ``flowdeck_jobs`` with a tenant's id when that tenant's callback-token
rows are inserted or a lease on one is given back (migration 0012). One connection per API
process listens, from the first long poll on; each waiting fetch waits on its tenant's event and
looks again when it is set, or after :attr:`JobWakeups.fallback_seconds` (a lease that lapses by
itself sends nothing). Without a listener (SQLite, or the connection is down and being
re-opened) a fetch looks again every :attr:`JobWakeups.poll_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import make_url

if TYPE_CHECKING:
    from uuid import UUID

log = logging.getLogger(__name__)
CHANNEL = "flowdeck_jobs"


class JobWakeups:
    """Per-tenant events set by PostgreSQL's notifications (``database_url`` None: none come)."""

    poll_seconds: float = 0.25
    """How often a waiting fetch looks again when nothing will wake it."""
    fallback_seconds: float = 2.0
    """How often a waiting fetch looks again while notifications arrive (for leases that lapse)."""
    retry_seconds: float = 1.0
    """How long the listener waits before opening its connection again after losing it."""

    def __init__(self, database_url: str | None) -> None:
        self._dsn = None
        if database_url is not None and database_url.startswith("postgresql+asyncpg"):
            self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._events: dict[UUID, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = False

    def event(self, tenant: UUID) -> asyncio.Event:
        """The event the tenant's next notification sets (take it before looking for jobs: a job
        written while the caller looks sets it, and the wait that follows ends at once)."""
        if self._dsn is not None and self._task is None:
            self._task = asyncio.create_task(self._listen(self._dsn), name="flowdeck-job-wakeups")
        event = self._events.get(tenant)
        if event is None:
            event = self._events[tenant] = asyncio.Event()
        return event

    @property
    def wait_seconds(self) -> float:
        """How long a waiting fetch waits for its event before it looks again."""
        return self.fallback_seconds if self.listening else self.poll_seconds

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _wake(self, tenant: UUID) -> None:
        event = self._events.pop(tenant, None)
        if event is not None:
            event.set()

    def _wake_all(self) -> None:
        for tenant in list(self._events):
            self._wake(tenant)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            tenant = uuid.UUID(payload)
        except ValueError:
            return
        self._wake(tenant)

    async def _listen(self, dsn: str) -> None:
        while True:
            try:
                await self._listen_on(await asyncpg.connect(dsn))
            except Exception as exc:
                log.warning("job wake-ups: not listening (%s); fetches poll meanwhile", type(exc).__name__)
            await asyncio.sleep(self.retry_seconds)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` until it closes."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._notified)
            self.listening = True
            self._wake_all()  # what was written before we listened: look again now
            await lost.wait()
            log.warning("job wake-ups: the connection closed; opening it again")
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=1))
