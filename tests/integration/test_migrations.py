"""Alembic: upgrade from empty, downgrade to base and up again, models and migrations agree."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text
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


_SEED = [
    "INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES (:t, 'm', 'm', 'active', :now, :now)",
    "INSERT INTO workflow_definitions (id, tenant_id, name, version, definition_json, is_active, created_at, "
    "updated_at) VALUES (:d, :t, 'w', '1', '{}', true, :now, :now)",
    "INSERT INTO workflow_instances (id, tenant_id, definition_id, workflow_name, workflow_version, status, "
    "current_steps, context_data, metadata, started_at, version, kernel_state, created_at, updated_at) "
    "VALUES (:i, :t, :d, 'w', '1', 'waiting', '[]', '{}', '{}', :now, 1, '{}', :now, :now)",
    "INSERT INTO workflow_human_tasks (id, tenant_id, instance_id, workflow_name, step_name, title, assignee_id, "
    "candidate_groups, status, due_at, created_at, updated_at) VALUES "
    "(:a, :t, :i, 'w', 'a', 'a', 'ann', '[\"red\"]', 'pending', :now, :now, :now), "
    "(:b, :t, :i, 'w', 'b', 'b', NULL, '[\"red\", \"blue\", \"red\"]', 'completed', NULL, :now, :now), "
    "(:c, :t, :i, 'w', 'c', 'c', NULL, '[]', 'pending', NULL, :now, :now)",
]


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0008_indexes_the_existing_tasks(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = (
        request.getfixturevalue("empty_database")
        if dialect == "postgresql"
        else f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    )
    config = alembic_config(url)
    command.upgrade(config, "0007")
    ids = {key: uuid.uuid4() for key in "tdiabc"}
    now = datetime.now(UTC)

    async def seed() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                if dialect == "postgresql":  # the owner is bound by the forced policies too
                    await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(ids["t"])})
                    params: dict[str, object] = {**ids, "now": now}
                else:
                    params = {**{k: v.bytes for k, v in ids.items()}, "now": now.strftime("%Y-%m-%d %H:%M:%S.%f")}
                for statement in _SEED:
                    await conn.execute(text(statement), params)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    command.upgrade(config, "head")

    async def candidates() -> set[tuple[str, str, str, bool]]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                if dialect == "postgresql":
                    await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(ids["t"])})
                rows = await conn.execute(
                    text("SELECT task_id, principal, status, due_key FROM workflow_task_candidates")
                )
                names = {(v if dialect == "postgresql" else v.bytes): k for k, v in ids.items()}
                return {(names[task], principal, status, "9999" in str(due)) for task, principal, status, due in rows}
        finally:
            await engine.dispose()

    assert asyncio.run(candidates()) == {
        ("a", "u:ann", "pending", False),
        ("b", "g:blue", "completed", True),
        ("b", "g:red", "completed", True),
        ("c", "*", "pending", True),
    }
