"""What the worker and the scheduler share: the database, the tenants' engines, the step queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowdeck_engine import ValidationError
from flowdeck_runtime.dispatch import StoredWaits
from flowdeck_runtime.queue import SaqStepQueue
from flowdeck_runtime.telemetry import TracingInterceptor, configure_tracing
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import create_engine, session_factory

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

    from flowdeck_runtime.inprocess import InProcessQueue
    from flowdeck_runtime.settings import Settings


@dataclass
class Services:
    """The process's connections: built by :func:`open_services`, closed by :meth:`close`."""

    settings: Settings
    db: AsyncEngine
    tenants: Tenants
    queue: SaqStepQueue | InProcessQueue
    """SAQ on Redis in production; in the embedded mode, the in-process queue."""
    tracer_provider: TracerProvider | None = None

    async def close(self) -> None:
        """Close the queue's and the database's connections."""
        await self.queue.disconnect()
        await self.db.dispose()


def _server_settings(settings: Settings) -> dict[str, Any]:
    """asyncpg's per-session PostgreSQL settings: a paused process's open transaction is ended."""
    if "asyncpg" not in settings.database.url:
        return {}
    idle = settings.work.transaction_idle_seconds * 1000
    return {"server_settings": {"idle_in_transaction_session_timeout": str(idle)}}


def open_services(settings: Settings) -> Services:
    """The services for ``settings`` (production mode: PostgreSQL and Redis); nothing connects yet."""
    if settings.database.is_sqlite or not settings.redis.url:
        raise ValidationError("the worker and scheduler need PostgreSQL and Redis (FLOWDECK_DATABASE_URL, "
                              "FLOWDECK_REDIS_URL); embedded mode runs them inside the API")  # fmt: skip
    # Jobs hold no connection while their steps run: leases, loads and writes are batched into
    # shared transactions, heartbeats are short ones. A quarter of the jobs in flight at once, plus
    # room for the scheduler-like odd jobs, keeps a worker well inside PostgreSQL's default 100.
    pool = settings.database.pool(at_least=settings.work.concurrency // 4 + 4)
    db = create_engine(settings.database.url, connect_args=_server_settings(settings), **pool)
    queue = SaqStepQueue.from_url(settings.redis.url, settings.work, socket_timeout=None)
    provider = configure_tracing(settings.service_name)
    interceptor = None if provider is None else TracingInterceptor(provider.get_tracer("flowdeck.worker"))
    tenants = Tenants(session_factory(db), interceptor=interceptor, step_queue=queue, dispatcher=StoredWaits())
    return Services(settings, db, tenants, queue, provider)


__all__ = ["Services", "open_services"]
