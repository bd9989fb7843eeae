"""The production stack as real processes: ``flowdeck api``, ``flowdeck worker``, ``flowdeck scheduler``.

PostgreSQL and Redis come from the integration harness. Each process is configured only through
the environment, as ops would run it; its output goes to a file that a failing test prints.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_api.cli import dev_token
from flowdeck_runtime.settings import AuthSettings
from tests.integration.conftest import Database
from tests.integration.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
FLOWDECK = [sys.executable, "-m", "flowdeck_engine.cli"]


@dataclass
class Proc:
    """One process of the stack and its log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def signal(self, signum: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait; SIGKILL when it does not stop in time. Its exit code."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            return None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Stack:
    """The API, workers and a scheduler on one database and one Redis."""

    database: Database
    redis_url: str
    home: Path
    port: int = field(default_factory=free_port)
    queue: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:8]}")
    overrides: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    scheduler: Proc | None = None
    api: Proc | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "OTEL_"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            {
                "FLOWDECK_MODE": "production",
                "FLOWDECK_HOME": str(self.home),
                "FLOWDECK_DATABASE_URL": self.database.app_url,
                "FLOWDECK_DATABASE_ADMIN_URL": self.database.owner_url,
                "FLOWDECK_DATABASE_POOL_SIZE": "20",
                "FLOWDECK_REDIS_URL": self.redis_url,
                "FLOWDECK_QUEUE_NAME": self.queue,
                "FLOWDECK_JWT_ISSUER": "flowdeck-e2e",
                "FLOWDECK_DEV_SECRET_FILE": str(self.home / "dev-secret"),
                "FLOWDECK_STARTS_PER_MINUTE": "100000",
                "FLOWDECK_MAX_STARTS_IN_FLIGHT": "1000",
                "FLOWDECK_SCHEDULER_POLL": "0.2",
                "FLOWDECK_RECONCILE_QUIET": "2",
                "FLOWDECK_LEASE_SECONDS": "3",
                "FLOWDECK_JOB_HEARTBEAT": "3",
                "FLOWDECK_JOB_TIMEOUT": "60",
                "FLOWDECK_SHUTDOWN_GRACE": "10",
                "FLOWDECK_TRANSACTION_IDLE_SECONDS": "3",
                **self.overrides,
            }
        )
        return env

    def auth(self) -> AuthSettings:
        return AuthSettings(
            issuer="flowdeck-e2e",
            audience="flowdeck",
            algorithms=("HS256",),
            jwks_url=None,
            dev_secret_file=self.home / "dev-secret",
        )

    def _proc(self, name: str, *args: str, system: bool = False) -> Proc:
        """Start ``flowdeck *args``: as the app role (the API), or the system role (worker, scheduler)."""
        env = self.env()
        if system:
            env["FLOWDECK_DATABASE_URL"] = self.database.system_url
        proc = Proc(name, [*FLOWDECK, *args], env, self.home / f"{name}.log")
        proc.start()
        self.procs.append(proc)
        return proc

    def start_api(self) -> None:
        self.api = self._proc("api", "api", "--port", str(self.port), "--log-level", "warning")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/v1/health/live", timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            assert self.api.alive, self.api.output()
            time.sleep(0.1)
        raise AssertionError(f"the API did not start:\n{self.api.output()}")

    def start_worker(self) -> Proc:
        worker = self._proc(f"worker{len(self.workers)}", "worker", "--log-level", "warning", system=True)
        self.workers.append(worker)
        return worker

    def start_scheduler(self) -> Proc:
        self.scheduler = self._proc(f"scheduler{len(self.procs)}", "scheduler", "--log-level", "warning", system=True)
        return self.scheduler

    def stop(self) -> None:
        """SIGTERM to every process at once, then wait for each."""
        for proc in self.procs:
            if proc.alive:
                proc.signal(signal.SIGCONT)
                proc.signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.output()[-6000:]}" for p in self.procs)

    def token(self, tenant: uuid.UUID, user: str, *roles: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
        token = dev_token(
            self.auth(),
            tenant=tenant,
            subject=user,
            roles=roles or ("member",),
            groups=groups,
            ttl=timedelta(hours=1),
        )
        return {"authorization": f"Bearer {token}"}

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run ``statement`` as the owner (row-level security is forced, so owner reads need policies:
        use :meth:`tenant_sql` for tenant tables)."""
        engine = create_async_engine(self.database.owner_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    async def tenant_sql(self, tenant: uuid.UUID, statement: str, **params: Any) -> list[Any]:
        """Run ``statement`` as the app role, bound to ``tenant``."""
        engine = create_async_engine(self.database.app_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant)})
                result = await conn.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    async def new_tenant(self, slug: str = "acme") -> uuid.UUID:
        tenant = uuid.uuid4()
        await self.tenant_sql(
            tenant,
            "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) "
            "VALUES (:id, :slug, :name, 'active', now(), now())",
            id=tenant,
            slug=f"{slug}-{tenant.hex[:8]}",
            name=slug,
        )
        return tenant


async def wait_for(check: Any, seconds: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll the coroutine function ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
