"""Alembic: upgrade from empty, downgrade to base and up again, models and migrations agree."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_store import metadata
from tests.integration.conftest import OWNER, Database, _execute, alembic_config


def _tables(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.fixture
def empty_database(database: Database) -> Iterator[str]:
    """A new, empty database owned by the owner role; dropped afterwards."""
    name = f"flowdeck_empty_{uuid.uuid4().hex[:8]}"
    asyncio.run(_execute(database.admin_url, f"CREATE DATABASE {name} OWNER {OWNER}"))
    try:
        yield make_url(database.owner_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(database.admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_upgrade_downgrade_upgrade_on_postgresql(empty_database: str) -> None:
    config = alembic_config(empty_database)
    assert _tables(empty_database) == set()
    command.upgrade(config, "head")
    assert _tables(empty_database) == {*metadata.tables, "alembic_version"}
    command.downgrade(config, "base")
    assert _tables(empty_database) == {"alembic_version"}
    command.upgrade(config, "head")
    assert _tables(empty_database) == {*metadata.tables, "alembic_version"}


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    assert _tables(url) == {*metadata.tables, "alembic_version"}
    command.downgrade(config, "base")
    assert _tables(url) == {"alembic_version"}
    command.upgrade(config, "head")
    assert _tables(url) == {*metadata.tables, "alembic_version"}


def test_models_and_migrations_agree(database: Database) -> None:
    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))

    async def run() -> list[object]:
        engine = create_async_engine(database.owner_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(diff)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == []


def test_the_migrate_command_brings_a_new_database_to_head_and_is_idempotent(empty_database: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWDECK_")}
    env |= {"FLOWDECK_DATABASE_ADMIN_URL": empty_database, "FLOWDECK_APP_ROLE": "flowdeck_app"}
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "flowdeck_engine.cli", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr
        assert "the database is at head" in done.stdout
    assert _tables(empty_database) == {*metadata.tables, "alembic_version"}
    head = ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()

    async def version() -> str:
        engine = create_async_engine(empty_database, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return str((await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(version()) == head
