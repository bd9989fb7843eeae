"""Idle cost: a worker and a scheduler with nothing to do make at most one database query a second."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import event

from flowdeck_runtime.settings import AuthSettings, DatabaseSettings, RedisSettings, Settings, WorkSettings
from flowdeck_worker import Scheduler, build_worker, open_services
from tests.integration.conftest import Database


def _settings(database: Database, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        mode="production",
        database=DatabaseSettings(url=database.system_url, admin_url=database.owner_url),
        redis=RedisSettings(url=redis_url),
        auth=AuthSettings(
            issuer="t", audience="flowdeck", algorithms=("HS256",), jwks_url=None, dev_secret_file=tmp_path / "s"
        ),
        work=WorkSettings(queue_name=f"idle-{uuid.uuid4().hex[:6]}", poll_seconds=1.0),
    )


async def test_an_idle_worker_and_scheduler_make_at_most_one_query_per_second(
    truncated: Database, redis_url: str, tmp_path: Path
) -> None:
    settings = _settings(truncated, redis_url, tmp_path)
    worker_services = open_services(settings)
    scheduler_services = open_services(replace(settings))
    scheduler = Scheduler(scheduler_services)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    for engine in (worker_services.db, scheduler_services.db, scheduler.scan_engine):
        event.listen(engine.sync_engine, "before_cursor_execute", count)
    stop = asyncio.Event()
    await worker_services.queue.connect()
    await scheduler_services.queue.connect()
    worker, _ = build_worker(worker_services)
    running = [asyncio.create_task(worker.start()), asyncio.create_task(scheduler.run(stop))]
    try:
        await asyncio.sleep(1.5)  # both up; the scan connection is open
        statements.clear()
        await asyncio.sleep(6)
        seen = list(statements)
    finally:
        stop.set()
        await worker.stop()
        await asyncio.gather(*running, return_exceptions=True)
        await scheduler.close()
        await worker_services.close()
        await scheduler_services.close()
    scans = [s for s in seen if "flowdeck_claim_due" in s]
    assert len(seen) == len(scans), seen  # nothing but the scheduler's poll
    assert 4 <= len(scans) <= 6, len(scans)  # one a second (6 s)
