"""The inbox index: the principals each human task is routed to (``workflow_task_candidates``).

A task assigned to a user is routed to ``u:<user>``; an unassigned one to ``g:<group>`` for each
candidate group, or to ``*`` (anyone) when it has none. A user's inbox is the union of the ranges
of their own principals (:func:`principal_keys`), each an ordered btree range on
``(tenant_id, principal, status, due_key, task_id)``: a page costs one short index range per
principal, however many tasks the tenant has. Every writer of a task's routing, status or due time
keeps these rows in step in the same transaction: the change writer (both paths), escalations,
reassignment and the task repository.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast
from uuid import UUID

from sqlalchemy import and_, delete, exists, func, insert, or_, select, tuple_, update

from flowdeck_store.models import HumanTaskModel, TaskCandidateModel, WorkflowInstanceModel
from flowdeck_store.tenancy import asyncpg_connection

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session

ANYONE: Final = "*"
NO_DUE: Final = datetime(9999, 1, 1, tzinfo=UTC)
"""The sort key of a task without a due time: after every real one."""
_CANDIDATES = cast("Table", TaskCandidateModel.__table__)
_TASKS = cast("Table", HumanTaskModel.__table__)
_INSTANCES = cast("Table", WorkflowInstanceModel.__table__)

PRINCIPALS_SQL: Final = (
    "SELECT 'u:' || {t}.assignee_id WHERE {t}.assignee_id IS NOT NULL "
    "UNION SELECT 'g:' || g FROM jsonb_array_elements_text({t}.candidate_groups) AS g WHERE {t}.assignee_id IS NULL "
    "UNION SELECT '*' WHERE {t}.assignee_id IS NULL AND jsonb_array_length({t}.candidate_groups) = 0"
)
""":func:`principals` in PostgreSQL, over the task row aliased ``{t}`` (for ``LATERAL``)."""
NO_DUE_SQL: Final = "'9999-01-01 00:00:00+00'::timestamptz"


def principals(assignee: str | None, groups: Iterable[str]) -> list[str]:
    """The principals a task with ``assignee`` / candidate ``groups`` is routed to."""
    if assignee is not None:
        return [f"u:{assignee}"]
    return sorted({f"g:{group}" for group in groups}) or [ANYONE]


def principal_keys(user: str, groups: Iterable[str]) -> list[str]:
    """The principals whose tasks ``user``, a member of ``groups``, finds in their inbox."""
    return [f"u:{user}", ANYONE, *sorted({f"g:{group}" for group in groups})]


def routing(task: HumanTaskModel) -> dict[str, Any]:
    """What :func:`candidate_rows` needs of a task model."""
    return {
        "id": task.id,
        "assignee_id": task.assignee_id,
        "candidate_groups": task.candidate_groups,
        "status": task.status,
        "due_at": task.due_at,
    }


def candidate_rows(tenant_id: UUID, tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The candidate rows of ``tasks`` (task rows: ``id``, ``assignee_id``, ``candidate_groups``,
    ``status``, ``due_at``)."""
    return [
        {
            "tenant_id": tenant_id,
            "task_id": task["id"],
            "principal": principal,
            "status": task["status"],
            "due_key": task["due_at"] or NO_DUE,
        }
        for task in tasks
        for principal in principals(task["assignee_id"], task["candidate_groups"] or ())
    ]


INBOX_COLUMNS: Final = (
    ("id", "id"),
    ("instance_id", "instance_id"),
    ("workflow", "workflow_name"),
    ("step_name", "step_name"),
    ("title", "title"),
    ("description", "description"),
    ("form_schema", "form_schema"),
    ("assignee", "assignee_id"),
    ("candidate_groups", "candidate_groups"),
    ("status", "status"),
    ("due_at", "due_at"),
    ("reminder_at", "reminder_at"),
    ("claimed_by", "claimed_by"),
    ("created_at", "created_at"),
    ("completed_at", "completed_at"),
    ("completed_by", "completed_by"),
)
"""(name in an inbox row, task column)."""
_START: Final = (datetime(1, 1, 1, tzinfo=UTC), UUID(int=0))
_END: Final = datetime(9999, 12, 31, tzinfo=UTC)
INBOX_SQL: Final = (
    f"SELECT {', '.join(f't.{column} AS {name}' for name, column in INBOX_COLUMNS)} FROM ("  # noqa: S608 (built from constants)
    "SELECT DISTINCT f.task_id, f.due_key FROM unnest($2::text[]) AS mine(principal) CROSS JOIN LATERAL ("
    "SELECT c.task_id, c.due_key FROM workflow_task_candidates AS c "
    "WHERE c.tenant_id = $1 AND c.principal = mine.principal AND c.status = $3 "
    "AND (c.due_key, c.task_id) > ($4::timestamptz, $5::uuid) AND c.due_key < $6 "
    "AND ($7::text IS NULL OR EXISTS (SELECT FROM workflow_human_tasks AS w "
    "WHERE w.tenant_id = $1 AND w.id = c.task_id AND w.workflow_name = $7)) "
    "ORDER BY c.due_key, c.task_id LIMIT $8) AS f "
    "ORDER BY f.due_key, f.task_id LIMIT $8"
    ") AS page JOIN workflow_human_tasks AS t ON t.id = page.task_id AND t.tenant_id = $1 "
    "ORDER BY page.due_key, page.task_id"
)
"""The inbox on PostgreSQL: for each principal the first ``$8`` rows of its range after the cursor
(an index range, ``LATERAL``), then the first ``$8`` distinct tasks of their union. Every task of
that page is among the first ``$8`` of one of its principals, so the page is exact, and its cost is
bounded by principals x page size, not by the tenant's tasks. One fixed statement (prepared once
per connection): no filter is left out, each gets a value that keeps every row when unused."""


async def inbox_page(
    session: AsyncSession,
    tenant_id: UUID,
    keys: Sequence[str],
    *,
    status: str,
    workflow: str | None = None,
    due_before: datetime | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to ``limit`` tasks of ``status`` routed to any of ``keys`` (:func:`principal_keys`), by
    ``(due time or NO_DUE, id)`` after ``after``; rows named as :data:`INBOX_COLUMNS`."""
    bound = _END if due_before is None else min(due_before, NO_DUE)
    raw = await asyncpg_connection(session)
    if raw is not None:
        start = after or _START
        rows = await raw.fetch(INBOX_SQL, tenant_id, list(keys), status, *start, bound, workflow, limit)
        return [dict(row) for row in rows]
    t = _TASKS.c
    c = _CANDIDATES.c
    ids = select(c.task_id).where(
        c.tenant_id == tenant_id, c.principal.in_(keys), c.status == status, c.due_key < bound
    )
    if after is not None:
        ids = ids.where(tuple_(c.due_key, c.task_id) > after)
    due = func.coalesce(t.due_at, NO_DUE)
    query = select(*(t[column].label(name) for name, column in INBOX_COLUMNS)).where(
        t.tenant_id == tenant_id, t.id.in_(ids)
    )
    if workflow is not None:
        query = query.where(t.workflow_name == workflow)
    result = await session.execute(query.order_by(due, t.id).limit(limit))
    return [dict(row) for row in result.mappings()]


_TASK_COLUMNS: Final = ", ".join(f"t.{column} AS {name}" for name, column in INBOX_COLUMNS)
_ROUTED_SQL: Final = (
    "EXISTS (SELECT FROM workflow_task_candidates AS c "
    "WHERE c.tenant_id = $1 AND c.task_id = t.id AND c.principal = ANY($3::text[]))"
)
_TASK_SQL: Final = (
    f"SELECT {_TASK_COLUMNS}, i.workflow_version, {_ROUTED_SQL} AS routed "  # noqa: S608 (built from constants)
    "FROM workflow_human_tasks AS t JOIN workflow_instances AS i ON i.tenant_id = $1 AND i.id = t.instance_id "
    "WHERE t.tenant_id = $1 AND t.id = $2"
)
_CLAIM_SQL: Final = (
    "UPDATE workflow_human_tasks AS t SET claimed_by = $4, claimed_at = $5, updated_at = $5 "  # noqa: S608 (built from constants)
    "WHERE t.tenant_id = $1 AND t.id = $2 AND t.status = 'pending' AND (t.claimed_by IS NULL OR t.claimed_by = $4) "
    f"AND {_ROUTED_SQL} RETURNING {_TASK_COLUMNS}"
)


def _task_columns(t: Any) -> list[Any]:
    return [t[column].label(name) for name, column in INBOX_COLUMNS]


def routed(t: Any, tenant_id: UUID, keys: Sequence[str]) -> Any:
    """Whether the task row ``t`` is routed to one of ``keys`` (a user or group key), as SQL."""
    c = _CANDIDATES.c
    return exists().where(c.tenant_id == tenant_id, c.task_id == t.id, c.principal.in_(keys))


async def task_for(session: AsyncSession, tenant_id: UUID, task_id: UUID, keys: Sequence[str]) -> dict[str, Any] | None:
    """The task ``task_id`` as an inbox row (:data:`INBOX_COLUMNS`) with its instance's
    ``workflow_version`` and whether it is ``routed`` to one of ``keys``; None when there is none."""
    raw = await asyncpg_connection(session)
    if raw is not None:
        row = await raw.fetchrow(_TASK_SQL, tenant_id, task_id, list(keys))
        return None if row is None else dict(row)
    t, i = _TASKS.c, _INSTANCES.c
    query = (
        select(*_task_columns(t), i.workflow_version, routed(t, tenant_id, keys).label("routed"))
        .join_from(_TASKS, _INSTANCES, and_(i.tenant_id == tenant_id, i.id == t.instance_id))
        .where(t.tenant_id == tenant_id, t.id == task_id)
    )
    found = (await session.execute(query)).mappings().one_or_none()
    return None if found is None else dict(found)


async def claim_task(
    session: AsyncSession, tenant_id: UUID, task_id: UUID, keys: Sequence[str], user: str, now: datetime
) -> dict[str, Any] | None:
    """Claim the open task ``task_id`` for ``user`` if it is routed to one of ``keys`` and not
    claimed by someone else: the claimed task as an inbox row, or None when nothing was claimed."""
    raw = await asyncpg_connection(session)
    if raw is not None:
        row = await raw.fetchrow(_CLAIM_SQL, tenant_id, task_id, list(keys), user, now)
        return None if row is None else dict(row)
    t = _TASKS.c
    claimed = await session.execute(
        update(_TASKS)
        .where(
            t.tenant_id == tenant_id,
            t.id == task_id,
            t.status == "pending",
            or_(t.claimed_by.is_(None), t.claimed_by == user),
            routed(t, tenant_id, keys),
        )
        .values(claimed_by=user, claimed_at=now, updated_at=now)
        .returning(*_task_columns(t))
    )
    found = claimed.mappings().one_or_none()
    return None if found is None else dict(found)


async def add_candidates(
    session: AsyncSession | async_scoped_session[AsyncSession], tenant_id: UUID, tasks: Sequence[Mapping[str, Any]]
) -> None:
    """Write the candidate rows of new ``tasks`` (see :func:`candidate_rows`) in ``session``'s transaction."""
    if tasks:
        await session.execute(insert(_CANDIDATES), candidate_rows(tenant_id, tasks))


async def route_tasks(session: AsyncSession, tenant_id: UUID, tasks: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite the candidate rows of ``tasks`` (reassigned: see :func:`candidate_rows`)."""
    if tasks:
        c = _CANDIDATES.c
        ids = [t["id"] for t in tasks]
        await session.execute(delete(_CANDIDATES).where(c.tenant_id == tenant_id, c.task_id.in_(ids)))
        await add_candidates(session, tenant_id, tasks)


async def set_status(
    session: AsyncSession | async_scoped_session[AsyncSession], tenant_id: UUID, task_ids: Sequence[UUID], status: str
) -> None:
    """Record that the tasks ``task_ids`` are now ``status``."""
    if task_ids:
        c = _CANDIDATES.c
        await session.execute(
            update(_CANDIDATES).where(c.tenant_id == tenant_id, c.task_id.in_(task_ids)).values(status=status)
        )


__all__ = [
    "ANYONE",
    "INBOX_COLUMNS",
    "INBOX_SQL",
    "NO_DUE",
    "add_candidates",
    "candidate_rows",
    "claim_task",
    "inbox_page",
    "principal_keys",
    "principals",
    "route_tasks",
    "routed",
    "routing",
    "set_status",
    "task_for",
]
