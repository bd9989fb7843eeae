"""Writing changes: one transaction, fenced per instance, every table written in one batch.

:func:`write_changes` writes any number of :class:`~flowdeck_store.changes.Change` of one tenant
inside the caller's transaction and returns the ids of the instances whose fence failed (their
stored version was no longer the expected one): for those nothing is written. On PostgreSQL with
asyncpg everything is one statement (data-modifying CTEs over ``unnest``-ed arrays: one round
trip, with only the parts the batch has rows for); elsewhere, one statement per table with
``executemany``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import and_, delete, insert, select, tuple_, update

from flowdeck_engine.instance import new_id
from flowdeck_store.inbox import NO_DUE_SQL, PRINCIPALS_SQL, add_candidates, set_status
from flowdeck_store.jsonsafe import JsonText, dumps
from flowdeck_store.models import (
    CallbackTokenModel,
    HumanTaskModel,
    OutboxEventModel,
    PendingWorkModel,
    StepExecutionModel,
    TimerModel,
    WorkflowInstanceModel,
)
from flowdeck_store.tenancy import asyncpg_connection
from flowdeck_store.webhooks import active_subscription

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
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("step_name", "text"),
        ("kind", "text"),
        ("fire_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    "workflow_callback_tokens": (
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("step_name", "text"),
        ("token", "text"),
        ("expires_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    "workflow_outbox": (
        ("tenant_id", "uuid"),
        ("instance_id", "uuid"),
        ("event_type", "text"),
        ("payload", "jsonb"),
        ("occurred_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
}
_TASKS = "workflow_human_tasks"
_OUTBOX = "workflow_outbox"
_PUBLISHED_SQL = (
    "(SELECT CASE WHEN EXISTS (SELECT 1 FROM webhook_subscriptions AS s WHERE s.tenant_id = $1::uuid AND s.active) "
    "THEN NULL ELSE $2::timestamptz END)"
)
"""An event's ``published_at`` as it is written: already published (to nobody) when its tenant has
no active webhook subscription, so the outbox relay never has to find and mark it. That was a
burst of row updates at every poll, about a sixth of PostgreSQL's work at 500 instances a second.
A subscription gets the events written after it was created."""
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
        self.now = now
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


async def write_changes(
    session: AsyncSession,
    tenant_id: UUID,
    changes: Sequence[Change],
    now: datetime,
    *,
    timers: tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]] = ((), ()),
) -> set[UUID]:
    """Write ``changes`` in ``session``'s transaction; the ids whose fence failed (nothing written for them).

    ``timers``: more ``workflow_timers`` rows to insert and keys to delete (a task's deadlines,
    :mod:`flowdeck_store.escalations`), written only for the changes whose fence holds.
    """
    batch = _Batch(changes, now)
    batch.inserts["workflow_timers"] += timers[0]
    batch.deletes["workflow_timers"] += timers[1]
    raw = await asyncpg_connection(session)
    if raw is not None:
        return await _write_postgresql(raw, tenant_id, batch)
    return await _write_portable(session, tenant_id, batch)


# --- PostgreSQL: one statement ---------------------------------------------------------------------

_STAMPS = ("tenant_id", "created_at", "updated_at")
_INSTANCE_SENT = tuple((n, t) for n, t in _INSTANCE if n not in _STAMPS)
_UPD = (("id", "uuid"), ("expected", "int"), *((n, t) for n, t in _INSTANCE if n in _UPDATED and n not in _STAMPS))
_SENT = {
    table: tuple((n, t) for n, t in columns if n not in ("tenant_id", "updated_at"))
    for table, columns in _INSERTS.items()
}
"""What travels per row: the tenant is the statement's ($1), so is an instance's time ($2, the
batch's ``now``); a new child row's ``updated_at`` is its ``created_at``."""


@cache
def _statement(created: bool, updated: bool, deletes: tuple[str, ...], closes: bool, inserts: tuple[str, ...]) -> str:
    """The one statement for a batch of this shape, with only the parts that have rows (fewer
    parameters to send, less to plan). Parameters: $1 the tenant, $2 the batch's time, then one
    array per column (:data:`_SENT`), part by part in the order :func:`_arguments` gives them.
    Child rows get their ids from ``gen_random_uuid()``. Every lookup also names its keys with
    ``= ANY(array)``: that offers the planner the key's index even while a table has no statistics
    yet, when it takes ``tenant_id = $1`` for 0.5% of the rows and would otherwise walk the whole
    tenant (all of a one-tenant table) for each batch."""
    params: list[str] = []

    def arrays(columns: tuple[tuple[str, str], ...]) -> str:
        out = []
        for _, pg_type in columns:
            params.append(pg_type)
            out.append(f"${len(params) + 2}::{pg_type}[]")  # $1 is the tenant, $2 the time
        return ", ".join(out)

    def names(columns: tuple[tuple[str, str], ...]) -> str:
        return ", ".join(name for name, _ in columns)

    def keys_of(first: int, columns: tuple[tuple[str, str], ...], name: str) -> str:
        index = next(i for i, (n, _) in enumerate(columns) if n == name)
        return f"${first + index + 3}::{columns[index][1]}[]"

    parts: list[str] = []
    found: list[str] = []
    if created:
        parts.append(
            f"ins AS (INSERT INTO workflow_instances ({names(_INSTANCE_SENT)}, tenant_id, created_at, updated_at) "  # noqa: S608 (built from the constant column lists above)
            f"SELECT r.*, $1::uuid, $2::timestamptz, $2::timestamptz FROM unnest({arrays(_INSTANCE_SENT)}) "
            f"AS r({names(_INSTANCE_SENT)}) ON CONFLICT (id) DO NOTHING RETURNING id)"
        )
        found.append("SELECT id FROM ins")
    if updated:
        first = len(params)
        parts.append(
            "upd AS (UPDATE workflow_instances AS w SET "  # noqa: S608 (built from the constant column lists above)
            + ", ".join(f"{n} = n.{n}" for n, _ in _UPD[2:])
            + f", updated_at = $2::timestamptz FROM unnest({arrays(_UPD)}) AS n({names(_UPD)}) "
            "WHERE w.id = n.id AND w.tenant_id = $1::uuid AND w.version = n.expected "
            f"AND w.id = ANY({keys_of(first, _UPD, 'id')}) RETURNING w.id)"
        )
        found.append("SELECT id FROM upd")
    if not found:
        raise ValueError("a batch without instances")
    parts.append(f"ok AS ({' UNION ALL '.join(found)})")
    for table in deletes:
        columns = _DELETES[table]
        first = len(params)
        keys = " AND ".join(f"t.{n} = d.{n}" for n, _ in columns)
        parts.append(
            f"del_{table} AS (DELETE FROM {table} AS t USING unnest({arrays(columns)}) AS d({names(columns)}) "  # noqa: S608 (built from the constant column lists above)
            f"WHERE {keys} AND t.tenant_id = $1 AND t.instance_id = ANY({keys_of(first, columns, 'instance_id')}) "
            "AND d.instance_id IN (SELECT id FROM ok))"
        )
    if closes:
        first = len(params)
        parts.append(
            "closes AS (UPDATE workflow_human_tasks AS t SET status = c.status, completed_by = c.completed_by, "  # noqa: S608 (built from the constant column lists above)
            f"completed_at = c.at, updated_at = c.at FROM unnest({arrays(_CLOSES)}) AS c({names(_CLOSES)}) "
            "WHERE t.instance_id = c.instance_id AND t.step_name = c.step_name AND t.status = 'pending' "
            f"AND t.tenant_id = $1 AND t.instance_id = ANY({keys_of(first, _CLOSES, 'instance_id')}) "
            "AND c.instance_id IN (SELECT id FROM ok) RETURNING t.id, t.status)"
        )
        parts.append(
            "close_candidates AS (UPDATE workflow_task_candidates AS k SET status = x.status FROM closes AS x "
            "WHERE k.tenant_id = $1 AND k.task_id = x.id)"
        )
    for table in inserts:
        columns = _SENT[table]
        extra, value = (", published_at", f", {_PUBLISHED_SQL}") if table == _OUTBOX else ("", "")
        parts.append(
            f"ins_{table} AS (INSERT INTO {table} (id, tenant_id, {names(columns)}, updated_at{extra}) "  # noqa: S608 (built from the constant column lists above)
            f"SELECT gen_random_uuid(), $1::uuid, r.*, r.created_at{value} FROM unnest({arrays(columns)}) "
            f"AS r({names(columns)}) WHERE r.instance_id IN (SELECT id FROM ok)"
            + (" RETURNING id, assignee_id, candidate_groups, status, due_at)" if table == _TASKS else ")")
        )
        if table == _TASKS:  # the inbox index of the new tasks (flowdeck_store.inbox)
            parts.append(
                "ins_candidates AS (INSERT INTO workflow_task_candidates (tenant_id, task_id, principal, status, "  # noqa: S608 (built from constants)
                f"due_key) SELECT $1::uuid, r.id, p.principal, r.status, COALESCE(r.due_at, {NO_DUE_SQL}) "
                f"FROM ins_{_TASKS} AS r CROSS JOIN LATERAL ({PRINCIPALS_SQL.format(t='r')}) AS p(principal))"
            )
    return "WITH " + ",\n".join(parts) + "\nSELECT id FROM ok"


def _columns(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for name, pg_type in columns:
        if pg_type == "jsonb":
            out.append([v if (v := row[name]) is None or type(v) is JsonText else dumps(v) for row in rows])
        else:
            out.append([row[name] for row in rows])
    return out


def _arguments(tenant_id: UUID, batch: _Batch) -> tuple[str, list[Any]]:
    """The statement for ``batch`` and its arguments."""
    deletes = tuple(table for table in _DELETES if batch.deletes[table])
    inserts = tuple(table for table in _INSERTS if batch.inserts[table])
    args: list[Any] = [tenant_id, batch.now]
    if batch.created:
        args += _columns(batch.created, _INSTANCE_SENT)
    if batch.updated:
        args += _columns(batch.updated, _UPD)
    for table in deletes:
        args += _columns(batch.deletes[table], _DELETES[table])
    if batch.closes:
        args += _columns(batch.closes, _CLOSES)
    for table in inserts:
        args += _columns(batch.inserts[table], _SENT[table])
    return _statement(bool(batch.created), bool(batch.updated), deletes, bool(batch.closes), inserts), args


GENERIC_PLANS = "SELECT set_config('plan_cache_mode', 'auto', true)"
"""Sent before a write: for the rest of its transaction, prepared statements may keep a generic
plan. The connections plan every statement for its arguments (``force_custom_plan``, see
:data:`flowdeck_store.database.CUSTOM_PLANS`), and that includes the foreign-key checks that
PostgreSQL runs for each row written (about 10 per instance of a 3-step workflow), each planned
anew. Their plan is a primary-key probe whatever the arguments, and planning them was a quarter of
PostgreSQL's CPU on the distributed benchmark. The write's own statement looks every row up by
key (``= ANY``). It goes just before the write, not with the transaction's ``BEGIN``: the reads a
transaction makes first (the worker's lease check, a start's running count) stay planned for their
arguments, since a generic plan for those may walk a tenant's rows."""


async def _write_postgresql(raw: Any, tenant_id: UUID, batch: _Batch) -> set[UUID]:
    statement, args = _arguments(tenant_id, batch)
    await raw.execute(GENERIC_PLANS)
    rows = await raw.fetch(statement, *args)
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
    tasks = _TABLES[_TASKS]
    for close in keep(batch.closes):
        closed = await session.execute(
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
            .returning(tasks.c.id)
        )
        await set_status(session, tenant_id, list(closed.scalars()), close["status"])
    for table_name, rows in batch.inserts.items():
        rows = [_with_id(row) for row in keep(rows)]
        if rows:
            if table_name == _OUTBOX and not await session.scalar(select(active_subscription(tenant_id))):
                for row in rows:
                    row["published_at"] = batch.now  # as _PUBLISHED_SQL does
            await session.execute(insert(_TABLES[table_name]), rows)
            if table_name == _TASKS:
                await add_candidates(session, tenant_id, rows)
    return failed


def _with_id(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with an id of its own and its encoded JSON decoded (for the dialect's JSON type)."""
    out = {name: json.loads(value) if type(value) is JsonText else value for name, value in row.items()}
    out["id"] = new_id()
    return out
