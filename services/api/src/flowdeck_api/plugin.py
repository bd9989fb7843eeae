"""The seeds' ``WorkflowPlugin``: the workflow routes, mountable in any Litestar app.

A Python developer mounts them in their own app with their own guards::

    app = Litestar(plugins=[WorkflowPlugin(config=WorkflowPluginConfig(
        enable_api=True, api_path_prefix="/workflows", api_guards=[my_guard]))])

The hosted API (:func:`flowdeck_api.app.create_app`) is this plugin at ``/v1`` plus health checks,
OpenAPI and OpenTelemetry. Requests to the routes must carry a bearer token (``authenticate``,
the default) or, with ``authenticate=False``, the app's own middleware must put a
:class:`~flowdeck_api.auth.Principal` in ``scope["user"]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litestar.middleware.base import DefineMiddleware
from litestar.plugins import InitPluginProtocol
from litestar.router import Router
from redis.asyncio import Redis
from sqlalchemy import select

from flowdeck_api.auth import JwksKeySource, SecretKeySource, TokenVerifier
from flowdeck_api.bodies import checked_json
from flowdeck_api.domain.callbacks.controller import CallbackController
from flowdeck_api.domain.definitions.controller import DefinitionController
from flowdeck_api.domain.instances.controller import InstanceController
from flowdeck_api.domain.instances.starts import Starts
from flowdeck_api.domain.jobs.controller import JobController
from flowdeck_api.domain.jobs.wakeups import JobWakeups
from flowdeck_api.domain.tasks.controller import AdminTaskController, TaskController
from flowdeck_api.domain.webhooks.controller import WebhookController
from flowdeck_api.errors import EXCEPTION_HANDLERS
from flowdeck_api.ratelimit import StartLimitMiddleware, StartLimits
from flowdeck_api.security import BearerAuthMiddleware
from flowdeck_runtime.dispatch import StoredWaits
from flowdeck_runtime.queue import SaqStepQueue
from flowdeck_runtime.settings import Settings, get_settings
from flowdeck_runtime.telemetry import TracingInterceptor
from flowdeck_runtime.tenants import Tenants
from flowdeck_store import TenantModel, TenantStatus, create_engine, session_factory

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar import Litestar
    from litestar.config.app import AppConfig
    from litestar.types import Guard
    from opentelemetry.sdk.trace import TracerProvider

    from flowdeck_api.auth import KeySource, Principal
    from flowdeck_engine import StepQueue

ROUTE_HANDLERS = (
    DefinitionController,
    InstanceController,
    TaskController,
    AdminTaskController,
    JobController,
    WebhookController,
)
_TENANT_TTL = 5.0


@dataclass
class WorkflowPluginConfig:
    """How the workflow routes are mounted."""

    enable_api: bool = True
    api_path_prefix: str = "/workflows"
    api_guards: Sequence[Guard] = field(default_factory=list)
    authenticate: bool = True
    settings: Settings | None = None
    tracer_provider: TracerProvider | None = None
    """When set, the engines make spans (see :mod:`flowdeck_runtime.telemetry`)."""
    step_queue: StepQueue | None = None
    """Where machine steps go (waits are then left to a scheduler); by default SAQ in production
    with Redis, and otherwise none: the request runs them and this process fires the waits."""


class _TenantStatusCache:
    """Whether a tenant may call the API: its row exists and is active (cached for 5 s, so a
    suspension bites within that)."""

    def __init__(self, tenants: Tenants) -> None:
        self._tenants = tenants
        self._seen: dict[Any, tuple[float, bool]] = {}

    async def __call__(self, principal: Principal) -> bool:
        now = time.monotonic()
        cached = self._seen.get(principal.tenant_id)
        if cached is not None and now - cached[0] < _TENANT_TTL:
            return cached[1]
        async with self._tenants.transaction(principal.tenant_id) as session:
            status = (
                await session.execute(select(TenantModel.status).where(TenantModel.id == principal.tenant_id))
            ).scalar_one_or_none()
        active = status == TenantStatus.ACTIVE.value or status == TenantStatus.ACTIVE
        if len(self._seen) > 100_000:
            self._seen.clear()
        self._seen[principal.tenant_id] = (now, active)
        return active


class WorkflowPlugin(InitPluginProtocol):
    """Mounts the workflow API (definitions, instances, tasks) and what it needs."""

    def __init__(self, config: WorkflowPluginConfig | None = None) -> None:
        self.config = config or WorkflowPluginConfig()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the routes, the error handlers, the body checks, and the app state they use."""
        config = self.config
        settings = config.settings or get_settings()
        db_engine = create_engine(settings.database.url, **settings.database.pool())
        interceptor = (
            None
            if config.tracer_provider is None
            else TracingInterceptor(config.tracer_provider.get_tracer("flowdeck.engine"))
        )
        # Production with Redis: machine steps run on workers, waits fire from the scheduler.
        # Otherwise (embedded, or no Redis) this process runs them itself.
        queue = config.step_queue
        if queue is None and not settings.embedded and settings.redis.url:
            queue = SaqStepQueue.from_url(settings.redis.url, settings.work)
        tenants = Tenants(
            session_factory(db_engine),
            interceptor=interceptor,
            step_queue=queue,
            dispatcher=None if queue is None else StoredWaits(),
        )
        keys: KeySource = (
            JwksKeySource(settings.auth.jwks_url)
            if settings.auth.jwks_url
            else SecretKeySource(settings.auth.dev_secret())
        )
        state = app_config.state
        state.settings = settings
        state.db_engine = db_engine
        state.dialect = db_engine.dialect.name
        state.tenants = tenants
        state.verifier = TokenVerifier(settings.auth, keys)
        state.tenant_active = _TenantStatusCache(tenants)
        # Machine steps run elsewhere: a start only reads and writes, so concurrent ones share a transaction.
        state.starts = None if queue is None else Starts(tenants, max_running=settings.limits.max_running_instances)
        state.redis = _redis(settings.redis.url)
        state.start_limits = StartLimits.from_settings(settings.limits, state.redis)
        state.job_wakeups = JobWakeups(settings.database.url)
        for exc_type, handler in EXCEPTION_HANDLERS.items():
            app_config.exception_handlers.setdefault(exc_type, handler)
        app_config.on_shutdown.append(_dispose)
        if config.enable_api:
            middleware: list[Any] = [DefineMiddleware(BearerAuthMiddleware)] if config.authenticate else []
            middleware.append(StartLimitMiddleware())
            app_config.route_handlers.append(
                Router(
                    path=config.api_path_prefix,
                    route_handlers=list(ROUTE_HANDLERS),
                    guards=list(config.api_guards),
                    before_request=checked_json(settings.limits.max_json_depth),
                    middleware=middleware,
                    security=[{"bearer": []}] if config.authenticate else None,
                )
            )
            app_config.route_handlers.append(
                Router(
                    path=config.api_path_prefix,
                    route_handlers=[CallbackController],
                    before_request=checked_json(settings.limits.max_json_depth),
                )
            )
        return app_config


def _redis(url: str | None) -> Redis | None:
    """A client for ``url`` (it connects on first use), or None in embedded mode."""
    return Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0) if url else None


async def _dispose(app: Litestar) -> None:
    await app.state.job_wakeups.close()
    await app.state.db_engine.dispose()
    if app.state.tenants.step_queue is not None:
        await app.state.tenants.step_queue.disconnect()
    if app.state.redis is not None:
        await app.state.redis.aclose()


__all__ = ["WorkflowPlugin", "WorkflowPluginConfig"]
