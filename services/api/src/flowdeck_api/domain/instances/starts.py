"""Group commit for starts: the starts of one tenant that arrive together share one transaction.

With a step queue (production: machine steps run on workers), a start only reads and writes: its
workflow's active version and the tenant's running count, then the new instance. Concurrent
starts of a tenant are gathered (:class:`~flowdeck_store.batching.Batcher`) and a batch is ONE
transaction: one statement reads the versions and the running count for all of them, the engine
starts each, one statement writes them all, one commit, then one Redis round trip enqueues their
jobs. Each start is still answered only once its instance has committed.

A start refused before it wrote anything (no such workflow or version: 404; the running cap: 429;
input the engine refuses) gets its own error while the others go ahead. When the batch fails as
a whole before its commit (the database, a constraint), each of its starts is tried again alone,
so one bad start fails only itself; when the commit itself fails, its outcome is unknown, and
each start gets the error rather than a second try (which could start it twice).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from sqlalchemy import func, select

from flowdeck_api.errors import ApiError
from flowdeck_engine import WorkflowStatus
from flowdeck_engine.registry import version_key
from flowdeck_runtime import tenancy
from flowdeck_store import WorkflowDefinitionModel, WorkflowInstanceModel
from flowdeck_store.batching import Batcher, BatchLimits, by_tenant
from flowdeck_store.engine import Start
from flowdeck_store.tenancy import asyncpg_connection

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

    from flowdeck_engine import WorkflowInstance
    from flowdeck_runtime.tenants import Tenants

LIVE = (WorkflowStatus.RUNNING.value, WorkflowStatus.WAITING.value, WorkflowStatus.PENDING.value)


def _versions_sql(app_filter: bool) -> str:
    """The active versions of the named workflows ($1) and the tenant's running count (statuses
    $2), in one statement (a row with a NULL name when none of the workflows has an active
    version). With ``app_filter`` the tenant ($3) is also filtered here, not only by row-level
    security (without it there is no $3: asyncpg cannot type a parameter no clause uses)."""
    d = "d.tenant_id = $3 AND " if app_filter else ""
    w = "w.tenant_id = $3 AND " if app_filter else ""
    return (
        "SELECT d.name, d.version, r.n FROM (SELECT count(*) AS n FROM workflow_instances AS w "  # noqa: S608 (constants)
        f"WHERE {w}w.status = ANY($2::text[])) AS r LEFT JOIN workflow_definitions AS d "
        f"ON {d}d.name = ANY($1::text[]) AND d.is_active"
    )


@dataclass(slots=True, eq=False)
class StartRequest:
    """One start waiting for its batch: what to start, for whom, in which trace."""

    workflow: str
    version: str | None
    data: dict[str, Any]
    created_by: str
    metadata: dict[str, Any] | None
    trace: Any = field(default_factory=otel_context.get_current)


@contextmanager
def _in_trace(trace: Any) -> Iterator[None]:
    """Run the block in the trace context of the request that asked for the start."""
    token = otel_context.attach(trace)
    try:
        yield
    finally:
        otel_context.detach(token)


def too_many_running(running: int, cap: int) -> ApiError:
    """The 429 of a start refused by the tenant's running-instance cap."""
    return ApiError(
        429,
        "too_many_running",
        f"the tenant has {running} running instances; the cap is {cap}",
        headers={"Retry-After": "10"},
    )


def choose_version(name: str, version: str | None, active: list[str]) -> str:
    """``version`` if it is active, else the latest active release (404 when there is none)."""
    if version is None:
        releases = [v for v in active if version_key(v)[3]] or active
        if not releases:
            raise ApiError(404, "workflow_not_found", f"workflow {name!r} has no active version")
        return max(releases, key=version_key)
    if version not in active:
        raise ApiError(404, "workflow_not_found", f"workflow {name!r} has no active version {version!r}")
    return version


class Starts:
    """Starts instances for many tenants, each tenant's concurrent starts in shared transactions."""

    def __init__(self, tenants: Tenants, *, max_running: int, limits: BatchLimits | None = None) -> None:
        self.tenants = tenants
        self.max_running = max_running
        limits = limits or BatchLimits()
        self._batchers = by_tenant(lambda tenant: Batcher(partial(self._run, tenant), id, limits))

    async def start(self, tenant: UUID, request: StartRequest) -> WorkflowInstance:
        """Start one instance (with whichever other starts of ``tenant`` are under way); it has
        committed when this returns."""
        return await self._batchers(tenant).submit(request)

    async def _run(self, tenant: UUID, requests: Sequence[StartRequest]) -> list[WorkflowInstance | BaseException]:
        engine = self.tenants.engine(tenant)
        out: list[WorkflowInstance | BaseException | None] = []
        accepted: list[tuple[int, Start]] = []
        committing = False
        try:
            async with engine.transaction(tenant) as session:
                active, running = await read_active(session, tenant, sorted({r.workflow for r in requests}))
                for request in requests:
                    try:
                        version = choose_version(request.workflow, request.version, active.get(request.workflow, []))
                        if running >= self.max_running:
                            raise too_many_running(running, self.max_running)
                        definition = await self.tenants.definition(tenant, request.workflow, version)
                    except Exception as exc:
                        out.append(exc)
                        continue
                    running += 1
                    trace = _in_trace(request.trace)
                    accepted.append(
                        (len(out), Start(definition, request.data, request.created_by, request.metadata, trace))
                    )
                    out.append(None)  # its result comes with the batch's
                if accepted:
                    started = await engine.start_many(tenant, [start for _, start in accepted])
                    for (index, _), result in zip(accepted, started, strict=True):
                        out[index] = result
                committing = True  # from here on, whatever is raised, the commit may have happened
        except Exception as exc:
            if not (committing and accepted):
                raise  # nothing was written: the batcher tries each start again alone
            # The commit's outcome is unknown (the connection went away during it): starting them
            # again could start them twice. Each gets the error (a 503); an idempotent start that
            # is retried finds its instance by its key.
            return [result if isinstance(result, BaseException) else exc for result in out]
        return [result if result is not None else AssertionError("no result") for result in out]


async def read_active(session: AsyncSession, tenant: UUID, names: list[str]) -> tuple[dict[str, list[str]], int]:
    """The active versions of ``names`` and the tenant's running count, in one statement."""
    raw = await asyncpg_connection(session)
    if raw is not None:
        tenant_arg = (tenant,) if tenancy.APP_FILTER else ()
        rows = await raw.fetch(_versions_sql(tenancy.APP_FILTER), names, list(LIVE), *tenant_arg)
    else:
        model, instances = WorkflowDefinitionModel, WorkflowInstanceModel
        live = (
            select(func.count())
            .select_from(instances)
            .where(tenancy.in_tenant(instances, tenant), instances.status.in_(LIVE))
            .scalar_subquery()
        )
        found = (
            await session.execute(
                select(model.name, model.version).where(
                    tenancy.in_tenant(model, tenant), model.name.in_(names), model.is_active.is_(True)
                )
            )
        ).all()
        count = (await session.execute(select(live))).scalar_one()
        rows = [(name, version, count) for name, version in found] or [(None, None, count)]
    active: dict[str, list[str]] = {}
    running = 0
    for name, version, count in rows:
        running = int(count)
        if name is not None:
            active.setdefault(name, []).append(version)
    return active, running


__all__ = ["StartRequest", "Starts", "choose_version", "read_active", "too_many_running"]
