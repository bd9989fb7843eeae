"""Integration fixtures: a real PostgreSQL (and Redis), migrated once per session.

``TEST_DATABASE_URL`` (a role that may create roles and databases) and ``TEST_REDIS_URL`` are
used when set; otherwise throwaway servers are started from the system binaries and stopped at
the end. The schema comes from ``alembic upgrade head``, run as the owner role; tests talk to
the database as the application role, which row-level security binds.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from argparse import Namespace
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_store import TenantModel, TenantSession, bind_tenant, create_engine, metadata, session_factory
from tests.integration.servers import PostgresServer, RedisServer, start_postgres, start_redis

ROOT = Path(__file__).resolve().parents[2]
OWNER = "flowdeck_owner"
APP = "flowdeck_app"
SYSTEM = "flowdeck_system"
DATABASE = f"flowdeck_test_{os.getpid()}"
TABLES = [t.name for t in reversed(metadata.sorted_tables)]


def alembic_config(url: str) -> Config:
    """Alembic's configuration for the repository's migrations against ``url``."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.cmd_opts = Namespace(x=[f"app_role={APP}", f"system_role={SYSTEM}"])
    return config


async def _execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Database:
    """The migrated test database: URLs for its owner, the application role (the API's) and the
    system role (the worker's and scheduler's: the app role plus the cross-tenant scans)."""

    admin_url: str
    owner_url: str
    app_url: str
    system_url: str


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A superuser-ish URL: TEST_DATABASE_URL, or a throwaway cluster's."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield str(make_url(given).set(drivername="postgresql+asyncpg"))
        return
    server: PostgresServer = start_postgres()
    try:
        yield server.url()
    finally:
        server.stop()


def provision(postgres_admin_url: str, name: str = DATABASE) -> Database:
    """A fresh database ``name`` owned by the owner role, migrated to head; the app and system
    roles may log in. :func:`drop` removes it."""
    admin = make_url(postgres_admin_url)
    asyncio.run(
        _execute(
            postgres_admin_url,
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN "
            f"CREATE ROLE {OWNER} LOGIN CREATEROLE; END IF; END $$",
            f"DROP DATABASE IF EXISTS {name}",
            f"CREATE DATABASE {name} OWNER {OWNER}",
        )
    )
    owner_url = admin.set(username=OWNER, password=None, database=name).render_as_string(hide_password=False)
    command.upgrade(alembic_config(owner_url), "head")
    asyncio.run(_execute(postgres_admin_url, f"ALTER ROLE {APP} LOGIN", f"ALTER ROLE {SYSTEM} LOGIN"))
    app_url, system_url = (
        admin.set(username=role, password=None, database=name).render_as_string(hide_password=False)
        for role in (APP, SYSTEM)
    )
    return Database(postgres_admin_url, owner_url, app_url, system_url)


def drop(database: Database) -> None:
    """Remove the database that :func:`provision` made."""
    name = make_url(database.owner_url).database
    asyncio.run(_execute(database.admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def database(postgres_admin_url: str) -> Iterator[Database]:
    """A fresh database owned by the owner role, migrated to head; the app role may log in."""
    db = provision(postgres_admin_url)
    try:
        yield db
    finally:
        drop(db)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """TEST_REDIS_URL, or a throwaway redis-server's URL."""
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    server: RedisServer = start_redis()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head, copied for every test that wants one."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    command.upgrade(alembic_config(f"sqlite+aiosqlite:///{path}"), "head")
    return path


# --- per test -------------------------------------------------------------------------------------


async def truncate(owner_url: str) -> None:
    """Empty every table (as the owner: TRUNCATE is not subject to row-level security)."""
    await _execute(owner_url, f"TRUNCATE {', '.join(TABLES)} CASCADE")


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database URL a store test runs on: PostgreSQL as the app role, or a fresh SQLite file.

    PostgreSQL is truncated afterwards (the code under test opens its own sessions).
    """
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "store.db"
        path.write_bytes(template.read_bytes())
        yield f"sqlite+aiosqlite:///{path}"
        return
    db: Database = request.getfixturevalue("database")
    try:
        yield db.app_url
    finally:
        asyncio.run(truncate(db.owner_url))


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the store URL (a pool big enough for the concurrency tests)."""
    kwargs: dict[str, Any] = {} if store_url.startswith("sqlite") else {"pool_size": 25, "max_overflow": 0}
    db = create_engine(store_url, **kwargs)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Tenant-guarded sessions on ``engine``."""
    return session_factory(engine)


NewTenant = Callable[[str], Awaitable[uuid.UUID]]


@pytest.fixture
def new_tenant(sessions: async_sessionmaker[AsyncSession]) -> NewTenant:
    """Make a tenant (as the app role: its own row, under its own binding); returns its id."""

    async def make(slug: str) -> uuid.UUID:
        tenant = uuid.uuid4()
        async with sessions() as session:
            bind_tenant(session, tenant)
            async with session.begin():
                session.add(TenantModel(id=tenant, slug=f"{slug}-{tenant.hex[:8]}", name=slug))
        return tenant

    return make


@pytest.fixture
def truncated(database: Database) -> Iterator[Database]:
    """The database, emptied after the test (for code that commits through its own sessions)."""
    try:
        yield database
    finally:
        asyncio.run(truncate(database.owner_url))


@asynccontextmanager
async def _unpooled(url: str) -> AsyncIterator[AsyncEngine]:
    db = create_engine(url, poolclass=NullPool)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def pg_app_engine(truncated: Database) -> AsyncIterator[AsyncEngine]:
    """An engine on PostgreSQL as the application role; tables truncated afterwards."""
    async with _unpooled(truncated.app_url) as db:
        yield db


@pytest.fixture
async def pg_system_engine(truncated: Database) -> AsyncIterator[AsyncEngine]:
    """An engine on PostgreSQL as the system role (the worker's and scheduler's); tables truncated afterwards."""
    async with _unpooled(truncated.system_url) as db:
        yield db


@pytest.fixture
async def savepoint_session(pg_app_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside an outer transaction that is rolled back at the end (commits become savepoints)."""
    async with pg_app_engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn,
            sync_session_class=TenantSession,
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()
