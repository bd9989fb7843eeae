"""``flowdeck scheduler``: fires due timers and deadlines, and re-sends lost or abandoned work.

Each poll is ONE statement across tenants, ``flowdeck_claim_due`` (a SECURITY DEFINER function
returning ``(tenant_id, id)`` pairs), on a connection held open in autocommit mode: an idle
scheduler costs one database query per ``poll_seconds`` and nothing else. Claimed items are each
handled under their own tenant:

- ``timer`` rows: a timer step fires (``fire_timer``); a webhook's ``timeout`` or a task's
  ``escalation`` expires its wait (``expire_wait``); a task's ``reminder`` becomes a
  ``HumanTaskReminder`` event in the outbox (with the timer's removal, in one transaction). The
  kernel ignores stale events, and the claim moves ``fire_at`` ahead, so several schedulers fire
  each item once; a row the change did not remove (its wait had already ended) is dropped after.
- ``work``: an instance whose due machine steps have no live job (Redis lost it, or its worker's
  lease expired) is enqueued again with its key ``instance_id:seq`` (a duplicate is a no-op).
- ``event``: an outbox event of a tenant with webhook subscriptions is fanned out to one delivery
  per matching subscription (events of tenants without any are marked published by the scan).
- ``delivery``: a due delivery is sent, signed (:mod:`flowdeck_worker.webhooks`), and its outcome
  written to the delivery log: delivered, tried again later with backoff, or failed for good.

Retention: at its start and every ``prune_every_seconds`` the scheduler removes, on the same
connection, published events past ``event_retention_days`` (with their delivery log) and
idempotency keys past ``idempotency_key_days`` (:func:`flowdeck_store.prune`), a batch of each
per poll until a batch comes back short: a backlog goes at up to ``_PRUNE_BATCH`` rows a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flowdeck_engine import InstanceNotFoundError
from flowdeck_store import claim_due, create_engine, drop_timer, instance_seq, load_timer, prune
from flowdeck_store.escalations import REMINDER, send_reminder
from flowdeck_store.scans import DELIVERY, EVENT, TIMER, WORK
from flowdeck_store.webhooks import DELIVERED, FAILED, PENDING, fan_out, load_delivery, record_attempt
from flowdeck_worker.services import open_services
from flowdeck_worker.webhooks import WebhookSender, next_attempt

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from flowdeck_runtime.settings import Settings
    from flowdeck_store import DueItem
    from flowdeck_worker.services import Services

log = logging.getLogger(__name__)
_PARALLEL = 16
_PRUNE_BATCH = 5000


class Scheduler:
    """Polls for due items and handles each under its tenant."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.work = services.settings.work
        # One connection, held open and in autocommit: one statement per poll.
        self.scan_engine: AsyncEngine = create_engine(
            services.settings.database.url,
            pool_size=1,
            max_overflow=0,
            isolation_level="AUTOCOMMIT",
        )
        self._conn: AsyncConnection | None = None
        self._parallel = asyncio.Semaphore(_PARALLEL)
        self.sender = WebhookSender(services.settings.webhooks)
        self.handled = 0
        self.pruned: dict[str, int] = {}
        """Rows removed by retention since start, by kind."""
        self._prune_at = 0.0  # time.monotonic() of the next retention batch: at the first poll

    async def close(self) -> None:
        """Close the scan connection and the webhook client."""
        await self._drop_connection()
        await self.scan_engine.dispose()
        await self.sender.close()

    async def tick(self) -> int:
        """Claim what is due (one statement) and handle it; the number of items claimed."""
        try:
            items = await claim_due(
                await self._connection(),
                limit=self.work.batch_size,
                claim_seconds=self.work.claim_seconds,
                quiet_seconds=self.work.quiet_seconds,
            )
        except Exception:
            log.exception("scheduler scan failed (retrying)")
            await self._drop_connection()
            return 0
        if items:
            await asyncio.gather(*(self._handle(item) for item in items))
        return len(items)

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            self._conn = await self.scan_engine.connect()
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set (a full batch polls again at once)."""
        while not stop.is_set():
            claimed = await self.tick()
            await self.housekeep()
            if claimed >= self.work.batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.work.poll_seconds)

    async def housekeep(self) -> None:
        """Remove a batch of what is past retention, when that is due (on the scan connection)."""
        if time.monotonic() < self._prune_at:
            return
        work, now = self.work, datetime.now(UTC)
        try:
            removed = await prune(
                await self._connection(),
                events_before=_days_before(now, work.event_retention_days),
                keys_before=_days_before(now, work.idempotency_key_days),
                limit=_PRUNE_BATCH,
            )
        except Exception:
            log.exception("retention failed (trying again in %ss)", work.prune_every_seconds)
            await self._drop_connection()
            removed = {}
        for kind, count in removed.items():
            self.pruned[kind] = self.pruned.get(kind, 0) + count
        if max(removed.values(), default=0) < _PRUNE_BATCH:  # nothing more: until the next round
            self._prune_at = time.monotonic() + work.prune_every_seconds
        if any(removed.values()):
            log.info("retention removed %s", ", ".join(f"{n} {kind}" for kind, n in removed.items()))

    async def _handle(self, item: DueItem) -> None:
        async with self._parallel:
            try:
                if item.kind == TIMER:
                    await self._fire(item)
                elif item.kind == WORK:
                    await self._resend(item)
                elif item.kind == EVENT:
                    await self._fan_out(item)
                elif item.kind == DELIVERY:
                    await self._deliver(item)
                self.handled += 1
            except Exception:
                log.exception("scheduler could not handle %s %s of tenant %s", item.kind, item.id, item.tenant_id)

    async def _fire(self, item: DueItem) -> None:
        tenants = self.services.tenants
        async with tenants.transaction(item.tenant_id) as session:
            timer = await load_timer(session, item.tenant_id, item.id)
        if timer is None:
            return  # its wait ended meanwhile
        if timer.kind == REMINDER:
            async with tenants.transaction(item.tenant_id) as session:  # the event and the timer's removal: once
                await send_reminder(session, item.tenant_id, timer.instance_id, timer.step_name, datetime.now(UTC))
                await drop_timer(session, item.tenant_id, item.id)
            return
        try:
            engine = await tenants.prepare(item.tenant_id, timer.instance_id)
            if timer.kind == TIMER:
                await engine.fire_timer(timer.instance_id, timer.step_name)
            else:
                await engine.expire_wait(timer.instance_id, timer.step_name)
        except InstanceNotFoundError:
            pass
        async with tenants.transaction(item.tenant_id) as session:
            await drop_timer(session, item.tenant_id, item.id)

    async def _resend(self, item: DueItem) -> None:
        async with self.services.tenants.transaction(item.tenant_id) as session:
            seq = await instance_seq(session, item.tenant_id, item.id)
        if seq is not None:
            await self.services.queue.resend(item.tenant_id, item.id, seq)

    async def _fan_out(self, item: DueItem) -> None:
        async with self.services.tenants.transaction(item.tenant_id) as session:
            await fan_out(session, item.tenant_id, item.id, datetime.now(UTC))

    async def _deliver(self, item: DueItem) -> None:
        tenants = self.services.tenants
        async with tenants.transaction(item.tenant_id) as session:
            work = await load_delivery(session, item.tenant_id, item.id)
        if work is None:
            return  # delivered, failed, or its subscription was removed meanwhile
        outcome = await self.sender.send(work, str(item.tenant_id))
        attempts = work.attempts + 1
        now = datetime.now(UTC)
        retry_at = None if outcome.delivered else next_attempt(self.services.settings.webhooks, attempts, now)
        status = DELIVERED if outcome.delivered else PENDING if retry_at is not None else FAILED
        async with tenants.transaction(item.tenant_id) as session:
            await record_attempt(
                session,
                item.tenant_id,
                item.id,
                status=status,
                attempts=attempts,
                status_code=outcome.status_code,
                error=outcome.error,
                next_attempt_at=retry_at,
                now=now,
            )


def _days_before(now: datetime, days: int) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


async def run_scheduler(settings: Settings) -> None:
    """Run a scheduler until SIGTERM or SIGINT."""
    services = open_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    scheduler = Scheduler(services)
    try:
        await services.queue.connect()
        log.info("flowdeck scheduler polling every %ss", settings.work.poll_seconds)
        await scheduler.run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await scheduler.close()
        await services.close()
    log.info("flowdeck scheduler stopped")


__all__ = ["Scheduler", "run_scheduler"]
