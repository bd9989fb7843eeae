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

from sqlalchemy import delete, insert, update

from flowdeck_store.models import TaskCandidateModel

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from uuid import UUID

    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session

ANYONE: Final = "*"
NO_DUE: Final = datetime(9999, 1, 1, tzinfo=UTC)
"""The sort key of a task without a due time: after every real one."""
_CANDIDATES = cast("Table", TaskCandidateModel.__table__)

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


async def add_candidates(session: AsyncSession, tenant_id: UUID, tasks: Sequence[Mapping[str, Any]]) -> None:
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
    "NO_DUE",
    "add_candidates",
    "candidate_rows",
    "principal_keys",
    "principals",
    "route_tasks",
    "set_status",
]
