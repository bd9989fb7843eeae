"""Writing changes: one transaction, fenced per instance, every table written in one batch.

:func:`write_changes` writes any number of :class:`~flowdeck_store.changes.Change` of one tenant
inside the caller's transaction and returns the ids of the instances whose fence failed (their
stored version was no longer the expected one): for those nothing is written. On PostgreSQL with
asyncpg everything is one statement (data-modifying CTEs over ``unnest``-ed arrays: one round
trip); elsewhere, one statement per table with ``executemany``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import and_, delete, insert, tuple_, update

from flowdeck_store.jsonsafe import dumps
from flowdeck_store.models import (
    CallbackTokenModel,
    HumanTaskModel,
    OutboxEventModel,
    PendingWorkModel,
    StepExecutionModel,
    TimerModel,
    WorkflowInstanceModel,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncSession

    from flowdeck_store.changes import Change, Waits

# Column lists with PostgreSQL types, for the single-statement path.
_INSTANCE = (
    ("id", "uuid"),
    ("tenant_id", "uuid"),
    ("definition_id", "uuid"),
    ("workflow_name", "text"),
    ("workflow_version", "text"),
    ("status", "text"),
    ("current_step", "text"),
    ("current_steps", "jsonb"),
    ("context_data", "jsonb"),
    ("metadata", "jsonb"),
    ("error", "text"),
    ("started_at", "timestamptz"),
    ("completed_at", "timestamptz"),
    ("created_by", "text"),
    ("version", "int"),
    ("kernel_state", "jsonb"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
_UPDATED = ("status", "current_step", "current_steps", "context_data", "error", "completed_at", "version",
            "kernel_state", "updated_at")  # fmt: skip
_INSERTS: dict[str, tuple[tuple[str, str], ...]] = {
    "workflow_step_executions": (
        ("id", "uuid"),
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("seq", "int"),
        ("step_name", "text"),
        ("step_type", "text"),
        ("status", "text"),
        ("input_data", "jsonb"),
        ("output_data", "jsonb"),
        ("error", "text"),
        ("started_at", "timestamptz"),
        ("completed_at", "timestamptz"),
        ("assigned_to", "text"),
        ("completed_by", "text"),
        ("attempt", "int"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    "workflow_human_tasks": (
        ("id", "uuid"),
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("workflow_name", "text"),
        ("step_name", "text"),
        ("title", "text"),
        ("description", "text"),
        ("form_schema", "jsonb"),
        ("assignee_id", "text"),
        ("assignee_group", "text"),
        ("candidate_groups", "jsonb"),
        ("due_at", "timestamptz"),
        ("reminder_at", "timestamptz"),
        ("status", "text"),
        ("completed_at", "timestamptz"),
        ("completed_by", "text"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    "workflow_pending_work": (
        ("id", "uuid"),
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("step_name", "text"),
        ("attempt", "int"),
        ("not_before", "timestamptz"),
        ("lease_owner", "text"),
        ("lease_expires_at", "timestamptz"),
        ("fence", "int"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    "workflow_timers": (
        ("id", "uuid"),
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("step_name", "text"),
        ("kind", "text"),
        ("fire_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    "workflow_callback_tokens": (
        ("id", "uuid"),
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("step_name", "text"),
        ("token", "text"),
        ("expires_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    "workflow_outbox": (
        ("id", "uuid"),
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("event_type", "text"),
        ("payload", "jsonb"),
        ("occurred_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
}
_CLOSES = (("instance_id", "uuid"), ("step_name", "text"), ("status", "text"), ("completed_by", "text"),
           ("at", "timestamptz"))  # fmt: skip
_DELETES: dict[str, tuple[tuple[str, str], ...]] = {
    "workflow_pending_work": (("instance_id", "uuid"), ("step_name", "text"), ("attempt", "int")),
    "workflow_timers": (("instance_id", "uuid"), ("step_name", "text"), ("kind", "text")),
    "workflow_callback_tokens": (("instance_id", "uuid"), ("step_name", "text")),
}


class _Batch:
    """All rows of the changes, per table."""

    def __init__(self, changes: Sequence[Change], now: datetime) -> None:
        self.created = [c.instance_row(now) for c in changes if c.created]
        self.updated = [{**c.instance_row(now), "expected": c.expected_version} for c in changes if not c.created]
        self.inserts: dict[str, list[dict[str, Any]]] = {table: [] for table in _INSERTS}
        self.deletes: dict[str, list[dict[str, Any]]] = {table: [] for table in _DELETES}
        self.closes: list[dict[str, Any]] = []
        for c in changes:
            waits: Waits = c.waits(now)
            self.inserts["workflow_step_executions"] += c.steps
            self.inserts["workflow_human_tasks"] += c.tasks
            self.inserts["workflow_outbox"] += c.outbox
            self.inserts["workflow_pending_work"] += waits.work_new
            self.inserts["workflow_timers"] += waits.timers_new
            self.inserts["workflow_callback_tokens"] += waits.tokens_new
            self.deletes["workflow_pending_work"] += waits.work_gone
            self.deletes["workflow_timers"] += waits.timers_gone
            self.deletes["workflow_callback_tokens"] += waits.tokens_gone
            self.closes += c.task_closes


async def write_changes(session: AsyncSession, tenant_id: UUID, changes: Sequence[Change], now: datetime) -> set[UUID]:
    """Write ``changes`` in ``session``'s transaction; the ids whose fence failed (nothing written for them)."""
    batch = _Batch(changes, now)
    connection = await session.connection()
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "asyncpg":
        raw = await connection.get_raw_connection()
        return await _write_postgresql(raw.driver_connection, tenant_id, batch)
    return await _write_portable(session, tenant_id, batch)


# --- PostgreSQL: one statement ---------------------------------------------------------------------


def _statement() -> str:
    params: list[str] = []

    def arrays(columns: tuple[tuple[str, str], ...]) -> str:
        out = []
        for _, pg_type in columns:
            params.append(pg_type)
            out.append(f"${len(params) + 1}::{pg_type}[]")  # $1 is the tenant
        return ", ".join(out)

    def names(columns: tuple[tuple[str, str], ...]) -> str:
        return ", ".join(name for name, _ in columns)

    parts = [
        f"ins AS (INSERT INTO workflow_instances ({names(_INSTANCE)}) "  # noqa: S608 (built from the constant column lists above)
        f"SELECT * FROM unnest({arrays(_INSTANCE)}) ON CONFLICT (id) DO NOTHING RETURNING id)",
    ]
    upd_cols = (("id", "uuid"), ("expected", "int"), *((n, t) for n, t in _INSTANCE if n in _UPDATED))
    parts.append(
        "upd AS (UPDATE workflow_instances AS w SET "  # noqa: S608 (built from the constant column lists above)
        + ", ".join(f"{n} = n.{n}" for n, _ in upd_cols[2:])
        + f" FROM unnest({arrays(upd_cols)}) AS n({names(upd_cols)}) "
        "WHERE w.id = n.id AND w.tenant_id = $1 AND w.version = n.expected RETURNING w.id)"
    )
    parts.append("ok AS (SELECT id FROM ins UNION ALL SELECT id FROM upd)")
    for table, columns in _DELETES.items():
        keys = " AND ".join(f"t.{n} = d.{n}" for n, _ in columns)
        parts.append(
            f"del_{table} AS (DELETE FROM {table} AS t USING unnest({arrays(columns)}) AS d({names(columns)}) "  # noqa: S608 (built from the constant column lists above)
            f"WHERE {keys} AND t.tenant_id = $1 AND d.instance_id IN (SELECT id FROM ok))"
        )
    parts.append(
        f"closes AS (UPDATE workflow_human_tasks AS t SET status = c.status, completed_by = c.completed_by, "  # noqa: S608 (built from the constant column lists above)
        f"completed_at = c.at, updated_at = c.at FROM unnest({arrays(_CLOSES)}) AS c({names(_CLOSES)}) "
        "WHERE t.instance_id = c.instance_id AND t.step_name = c.step_name AND t.status = 'pending' "
        "AND t.tenant_id = $1 AND c.instance_id IN (SELECT id FROM ok))"
    )
    for table, columns in _INSERTS.items():
        parts.append(
            f"ins_{table} AS (INSERT INTO {table} ({names(columns)}) SELECT r.* FROM unnest({arrays(columns)}) "  # noqa: S608 (built from the constant column lists above)
            f"AS r({names(columns)}) WHERE r.instance_id IN (SELECT id FROM ok))"
        )
    return "WITH " + ",\n".join(parts) + "\nSELECT id FROM ok"


_STATEMENT = _statement()


def _columns(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for name, pg_type in columns:
        if pg_type == "jsonb":
            out.append([None if (v := row[name]) is None else dumps(v) for row in rows])
        else:
            out.append([row[name] for row in rows])
    return out


async def _write_postgresql(raw: Any, tenant_id: UUID, batch: _Batch) -> set[UUID]:
    args: list[Any] = [tenant_id]
    args += _columns(batch.created, _INSTANCE)
    args += _columns(
        batch.updated, (("id", "uuid"), ("expected", "int"), *((n, t) for n, t in _INSTANCE if n in _UPDATED))
    )
    for table, columns in _DELETES.items():
        args += _columns(batch.deletes[table], columns)
    args += _columns(batch.closes, _CLOSES)
    for table, columns in _INSERTS.items():
        args += _columns(batch.inserts[table], columns)
    rows = await raw.fetch(_STATEMENT, *args)
    written = {row[0] for row in rows}
    return {row["id"] for row in (*batch.created, *batch.updated)} - written


# --- anywhere: one statement per table ---------------------------------------------------------------

_TABLES: dict[str, Table] = {
    model.__tablename__: cast("Table", model.__table__)
    for model in (
        StepExecutionModel,
        HumanTaskModel,
        PendingWorkModel,
        TimerModel,
        CallbackTokenModel,
        OutboxEventModel,
    )
}


async def _write_portable(session: AsyncSession, tenant_id: UUID, batch: _Batch) -> set[UUID]:
    instances = cast("Table", WorkflowInstanceModel.__table__)
    failed: set[UUID] = set()
    for row in batch.updated:
        values = {name: row[name] for name in _UPDATED}
        result = await session.execute(
            update(instances)
            .where(
                instances.c.id == row["id"], instances.c.tenant_id == tenant_id, instances.c.version == row["expected"]
            )
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            failed.add(row["id"])
    if batch.created:
        await session.execute(insert(instances), batch.created)

    def keep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["instance_id"] not in failed]

    for table_name, columns in _DELETES.items():
        rows = keep(batch.deletes[table_name])
        if rows:
            table = _TABLES[table_name]
            names = [n for n, _ in columns]
            await session.execute(
                delete(table).where(
                    table.c.tenant_id == tenant_id,
                    tuple_(*(table.c[n] for n in names)).in_([tuple(r[n] for n in names) for r in rows]),
                )
            )
    tasks = _TABLES["workflow_human_tasks"]
    for close in keep(batch.closes):
        await session.execute(
            update(tasks)
            .where(
                and_(
                    tasks.c.tenant_id == tenant_id,
                    tasks.c.instance_id == close["instance_id"],
                    tasks.c.step_name == close["step_name"],
                    tasks.c.status == "pending",
                )
            )
            .values(
                status=close["status"],
                completed_by=close["completed_by"],
                completed_at=close["at"],
                updated_at=close["at"],
            )
        )
    for table_name, rows in batch.inserts.items():
        rows = keep(rows)
        if rows:
            await session.execute(insert(_TABLES[table_name]), rows)
    return failed
