"""Settings: environment-backed frozen dataclasses behind one cached accessor.

Every variable is optional; the defaults run the embedded mode (SQLite, no Redis, a generated
development secret). Importing this module reads nothing: :func:`get_settings` does, once.
"""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdeck_engine import ValidationError


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer, not {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a number, not {raw!r}") from None


def _list(name: str, default: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in _env(name, default).split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Where the truth lives. ``url`` is used by the services; ``admin_url`` by migrations."""

    url: str
    admin_url: str
    pool_size: int = 20
    """Connections a process keeps open; as many again may open under bursts (then close)."""

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database (no row-level security there)."""
        return self.url.startswith("sqlite")

    def pool(self, *, at_least: int = 0) -> dict[str, Any]:
        """The connection pool's settings: ``pool_size`` kept (``at_least`` if more), as many
        again under bursts, and a checkout that waits at most 10 s (then the request gets a 503)."""
        size = max(self.pool_size, at_least)
        return {"pool_size": size, "max_overflow": size, "pool_timeout": 10}


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Redis wakes workers and shares rate limits across API processes; None in embedded mode."""

    url: str | None


@dataclass(frozen=True, slots=True)
class WorkSettings:
    """How machine steps, timers and deadlines are run outside the request path (production mode).

    ``queue_name`` is the SAQ queue the API enqueues to and the workers take from. A worker holds
    a lease on an instance's pending work for ``lease_seconds``, renewed every
    ``heartbeat_seconds`` while it runs; ``job_timeout_seconds`` bounds one job (one instance's
    run of consecutive machine steps). The scheduler polls every ``poll_seconds`` (one database
    query per poll when idle) and re-enqueues work that waited ``quiet_seconds`` unleased.
    ``concurrency`` is the jobs one worker process runs at once: their leases, loads and writes
    share transactions and their Redis calls share pipelines, so jobs in flight are what those
    batches are made of (16 made batches of about four).
    """

    queue_name: str = "flowdeck"
    concurrency: int = 64
    job_timeout_seconds: int = 300
    heartbeat_seconds: int = 10
    lease_seconds: int = 15
    retries: int = 3
    shutdown_grace_seconds: int = 20
    poll_seconds: float = 1.0
    quiet_seconds: int = 5
    claim_seconds: int = 30
    batch_size: int = 100
    transaction_idle_seconds: int = 10
    """PostgreSQL ends a worker's or scheduler's session idle that long inside a transaction (a
    paused process would otherwise hold its row locks, and so its work, for as long as it sleeps)."""
    event_retention_days: int = 30
    """Published outbox events (with their webhook delivery log) are removed this many days after
    publication; an event with a delivery still pending stays. 0 keeps them all."""
    idempotency_key_days: int = 7
    """How long an ``Idempotency-Key`` of ``POST /v1/instances`` is remembered. 0: for good."""
    prune_every_seconds: int = 3600
    """How often the scheduler removes what is past retention (also at its start)."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Outbound webhooks: how often and how fast a delivery is tried, and where it may go.

    A delivery is tried up to ``max_attempts`` times, ``initial_delay_seconds`` after the first
    failure, then ``backoff`` times longer each time (at most ``max_delay_seconds``). Endpoints must
    be public HTTPS hosts; ``allowed_hosts`` (``FLOWDECK_WEBHOOK_ALLOWED_HOSTS``) exempts hosts from
    that (plain HTTP and private addresses), for development and tests.
    """

    max_attempts: int = 8
    initial_delay_seconds: float = 10.0
    backoff: float = 2.0
    max_delay_seconds: float = 3600.0
    timeout_seconds: float = 10.0
    allowed_hosts: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How bearer tokens are verified.

    Production reads keys from ``jwks_url`` (asymmetric algorithms only); development signs with
    a shared secret generated into ``dev_secret_file`` on first use, never committed.
    """

    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    jwks_url: str | None
    dev_secret_file: Path
    leeway_seconds: int = 30
    tenant_claim: str = "tenant"
    groups_claim: str = "groups"
    roles_claim: str = "roles"

    def __post_init__(self) -> None:
        symmetric = {a for a in self.algorithms if a.startswith("HS")}
        if not self.algorithms:
            raise ValidationError("FLOWDECK_JWT_ALGORITHMS names no algorithm")
        if symmetric and len(symmetric) != len(self.algorithms):
            raise ValidationError("never mix HS* and asymmetric JWT algorithms")
        if self.jwks_url and symmetric:
            raise ValidationError("a JWKS URL needs asymmetric algorithms (RS*, ES*, PS*, EdDSA)")
        if not self.jwks_url and not symmetric:
            raise ValidationError("asymmetric JWT algorithms need FLOWDECK_JWKS_URL")

    def dev_secret(self) -> str:
        """The development signing secret, generated (mode 0600) the first time."""
        path = self.dev_secret_file
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Caps that keep one tenant (or one request) from hurting the others."""

    max_body_bytes: int = 1_048_576
    max_definition_bytes: int = 262_144
    max_json_depth: int = 32
    starts_per_minute: int = 600
    max_running_instances: int = 10_000
    max_starts_in_flight: int = 64
    """Starts one API process serves at a time; beyond it starts are shed (503) so completions go on."""
    idempotency_abandon_seconds: int = 30
    """A start whose Idempotency-Key was claimed this long ago, that neither answered nor created an
    instance (its process or database went away), was abandoned: a retry with the key takes it over."""
    default_page_size: int = 50
    max_page_size: int = 200


@dataclass(frozen=True, slots=True)
class Settings:
    """All of Flowdeck's settings."""

    mode: str
    database: DatabaseSettings
    redis: RedisSettings
    auth: AuthSettings
    limits: LimitSettings = field(default_factory=LimitSettings)
    work: WorkSettings = field(default_factory=WorkSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    service_name: str = "flowdeck"

    @property
    def embedded(self) -> bool:
        """Whether Flowdeck runs embedded: SQLite, in-process worker and scheduler, no Redis."""
        return self.mode == "embedded"


def load_settings() -> Settings:
    """Read the settings from the environment (``FLOWDECK_*``; ``OTEL_*`` is read by the SDK)."""
    home = Path(_env("FLOWDECK_HOME", ".flowdeck"))
    mode = _env("FLOWDECK_MODE", "embedded")
    if mode not in {"embedded", "production"}:
        raise ValidationError(f"FLOWDECK_MODE must be 'embedded' or 'production', not {mode!r}")
    url = _env("FLOWDECK_DATABASE_URL", f"sqlite+aiosqlite:///{home / 'flowdeck.db'}")
    jwks_url = os.environ.get("FLOWDECK_JWKS_URL") or None
    return Settings(
        mode=mode,
        database=DatabaseSettings(
            url=url,
            admin_url=_env("FLOWDECK_DATABASE_ADMIN_URL", url),
            pool_size=_int("FLOWDECK_DATABASE_POOL_SIZE", 20),
        ),
        redis=RedisSettings(url=os.environ.get("FLOWDECK_REDIS_URL") or None),
        auth=AuthSettings(
            issuer=_env("FLOWDECK_JWT_ISSUER", "flowdeck-dev"),
            audience=_env("FLOWDECK_JWT_AUDIENCE", "flowdeck"),
            algorithms=_list("FLOWDECK_JWT_ALGORITHMS", "RS256" if jwks_url else "HS256"),
            jwks_url=jwks_url,
            dev_secret_file=Path(_env("FLOWDECK_DEV_SECRET_FILE", str(home / "dev-secret"))),
            leeway_seconds=_int("FLOWDECK_JWT_LEEWAY", 30),
        ),
        limits=LimitSettings(
            starts_per_minute=_int("FLOWDECK_STARTS_PER_MINUTE", 600),
            max_running_instances=_int("FLOWDECK_MAX_RUNNING_INSTANCES", 10_000),
            idempotency_abandon_seconds=_int("FLOWDECK_IDEMPOTENCY_ABANDON_SECONDS", 30),
            max_starts_in_flight=_int("FLOWDECK_MAX_STARTS_IN_FLIGHT", 64),
        ),
        work=WorkSettings(
            queue_name=_env("FLOWDECK_QUEUE_NAME", "flowdeck"),
            concurrency=_int("FLOWDECK_WORKER_CONCURRENCY", 64),
            job_timeout_seconds=_int("FLOWDECK_JOB_TIMEOUT", 300),
            heartbeat_seconds=_int("FLOWDECK_JOB_HEARTBEAT", 10),
            lease_seconds=_int("FLOWDECK_LEASE_SECONDS", 15),
            retries=_int("FLOWDECK_JOB_RETRIES", 3),
            shutdown_grace_seconds=_int("FLOWDECK_SHUTDOWN_GRACE", 20),
            poll_seconds=_float("FLOWDECK_SCHEDULER_POLL", 1.0),
            quiet_seconds=_int("FLOWDECK_RECONCILE_QUIET", 5),
            claim_seconds=_int("FLOWDECK_CLAIM_SECONDS", 30),
            batch_size=_int("FLOWDECK_SCHEDULER_BATCH", 100),
            transaction_idle_seconds=_int("FLOWDECK_TRANSACTION_IDLE_SECONDS", 10),
            event_retention_days=_int("FLOWDECK_EVENT_RETENTION_DAYS", 30),
            idempotency_key_days=_int("FLOWDECK_IDEMPOTENCY_KEY_DAYS", 7),
            prune_every_seconds=_int("FLOWDECK_PRUNE_EVERY", 3600),
        ),
        webhooks=WebhookSettings(
            max_attempts=_int("FLOWDECK_WEBHOOK_MAX_ATTEMPTS", 8),
            initial_delay_seconds=_float("FLOWDECK_WEBHOOK_INITIAL_DELAY", 10.0),
            backoff=_float("FLOWDECK_WEBHOOK_BACKOFF", 2.0),
            max_delay_seconds=_float("FLOWDECK_WEBHOOK_MAX_DELAY", 3600.0),
            timeout_seconds=_float("FLOWDECK_WEBHOOK_TIMEOUT", 10.0),
            allowed_hosts=frozenset(h.lower() for h in _list("FLOWDECK_WEBHOOK_ALLOWED_HOSTS", "")),
        ),
        service_name=_env("OTEL_SERVICE_NAME", "flowdeck"),
    )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
