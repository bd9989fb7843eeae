"""Instances: start (idempotently), read, list, cancel, retry."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from flowdeck_api.domain.instances.schemas import (
    CallbackRead,
    InstancePage,
    InstanceRead,
    InstanceStart,
    InstanceSummary,
    StepRead,
)
from flowdeck_api.domain.instances.starts import StartRequest, choose_version, read_active, too_many_running
from flowdeck_api.errors import ApiError, not_found
from flowdeck_api.pagination import decode_time_and_id, encode_cursor
from flowdeck_engine import WorkflowsError
from flowdeck_runtime.tenancy import in_tenant
from flowdeck_store import CallbackTokenModel, IdempotencyKeyModel, StepExecutionModel, WorkflowInstanceModel

if TYPE_CHECKING:
    from uuid import UUID

    from flowdeck_api.auth import Principal
    from flowdeck_api.domain.instances.starts import Starts
    from flowdeck_engine import WorkflowInstance
    from flowdeck_runtime.tenants import Tenants

Row = WorkflowInstanceModel
IDEMPOTENCY_KEY: Final = "idempotency_key"
"""The instance's metadata entry for the Idempotency-Key of the start that created it."""


def _summary(row: WorkflowInstanceModel) -> InstanceSummary:
    return InstanceSummary(
        id=row.id,
        workflow=row.workflow_name,
        version=row.workflow_version,
        status=row.status,
        current_steps=list(row.current_steps or []),
        error=row.error,
        started_at=row.started_at,
        completed_at=row.completed_at,
        created_by=row.created_by,
    )


def read_of(instance: WorkflowInstance) -> InstanceRead:
    """The read model of an engine instance."""
    return InstanceRead(
        id=instance.id,
        workflow=instance.workflow_name,
        version=instance.workflow_version,
        status=instance.status.value,
        current_steps=instance.current_steps,
        error=instance.error,
        started_at=instance.started_at,
        completed_at=instance.completed_at,
        created_by=instance.created_by,
        context=dict(instance.context.data),
        steps=[
            StepRead(
                step_name=r.step_name,
                step_type=r.step_type.value,
                status=r.status.value,
                attempt=r.attempt,
                started_at=r.started_at,
                completed_at=r.completed_at,
                error=r.error,
                completed_by=r.completed_by,
            )
            for r in instance.step_history
        ],
    )


class InstanceService:
    """One principal's view of its tenant's instances: admins see all, others the ones they started."""

    def __init__(
        self,
        tenants: Tenants,
        principal: Principal,
        *,
        max_running: int = 10_000,
        abandoned_after: timedelta = timedelta(seconds=30),
        starts: Starts | None = None,
    ) -> None:
        """``abandoned_after``: how long an unanswered start holds its Idempotency-Key; ``starts``:
        where starts go to share transactions (when machine steps run on workers)."""
        self.starts = starts
        self.tenants = tenants
        self.principal = principal
        self.tenant = principal.tenant_id
        self.max_running = max_running
        self.abandoned_after = abandoned_after

    def _visible(self) -> Any:
        clause = in_tenant(Row, self.tenant)
        return clause if self.principal.is_admin else and_(clause, Row.created_by == self.principal.user_id)

    async def start(self, request: InstanceStart, idempotency_key: str | None) -> tuple[InstanceRead, bool]:
        """Start an instance; with an idempotency key a retried start returns the first result.

        Returns the instance and whether it was created by this call.
        """
        fingerprint = hashlib.sha256(msgspec.json.encode(request)).hexdigest()
        if idempotency_key is not None:
            earlier = await self._claim_key(idempotency_key, fingerprint)
            if earlier is not None:
                return earlier, False
        try:
            read = await self._start(request, idempotency_key)
        except (ApiError, WorkflowsError):
            # Refused before anything was written (no such workflow, the cap): the key is free again.
            if idempotency_key is not None:
                with contextlib.suppress(Exception):
                    await self._release_key(idempotency_key)
            raise
        # Any other failure (the database went away, the client left) may have come after the
        # instance committed: the key stays claimed, and a retry finds the instance by its key, or
        # takes the key over once it is abandoned.
        if idempotency_key is not None:
            await self._record_response(idempotency_key, read)
        return read, True

    async def _record_response(self, key: str, read: InstanceRead) -> None:
        async with self.tenants.transaction(self.tenant) as session:
            await session.execute(
                update(IdempotencyKeyModel).where(*self._key_clause(key)).values(response=msgspec.to_builtins(read))
            )

    async def _start(self, request: InstanceStart, idempotency_key: str | None = None) -> InstanceRead:
        metadata = None if idempotency_key is None else {IDEMPOTENCY_KEY: idempotency_key}
        if self.starts is not None:
            wanted = StartRequest(request.workflow, request.version, request.input, self.principal.user_id, metadata)
            return read_of(await self.starts.start(self.tenant, wanted))
        engine = self.tenants.engine(self.tenant)
        async with engine.transaction(self.tenant) as session:  # one transaction: the reads and the start
            active, running = await read_active(session, self.tenant, [request.workflow])
            version = choose_version(request.workflow, request.version, active.get(request.workflow, []))
            definition = await self.tenants.definition(self.tenant, request.workflow, version)
            if running >= self.max_running:
                raise too_many_running(running, self.max_running)
            instance = await engine.start_workflow(
                definition.name,
                request.input,
                definition.version,
                tenant_id=self.tenant,
                created_by=self.principal.user_id,
                metadata=metadata,
            )
        return read_of(instance)

    def _key_clause(self, key: str) -> tuple[Any, ...]:
        model = IdempotencyKeyModel
        return (in_tenant(model, self.tenant), model.scope == "instances.start", model.key == key)

    async def _claim_key(self, key: str, fingerprint: str) -> InstanceRead | None:
        model = IdempotencyKeyModel
        try:
            async with self.tenants.transaction(self.tenant) as session:
                session.add(model(tenant_id=self.tenant, scope="instances.start", key=key, request_hash=fingerprint))
            return None
        except IntegrityError:
            pass
        async with self.tenants.transaction(self.tenant) as session:
            row = (await session.execute(select(model).where(*self._key_clause(key)))).scalar_one()
        if row.request_hash != fingerprint:
            raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for a different request")
        if row.response is not None:
            return msgspec.convert(row.response, InstanceRead)
        # In progress, or its request died (the database went away) before it recorded the answer:
        # the instance carries its key from the commit that created it.
        created = await self._started_with(key)
        if created is not None:
            await self._record_response(key, created)
            return created
        now = datetime.now(UTC)
        if now - row.created_at >= self.abandoned_after:
            async with self.tenants.transaction(self.tenant) as session:  # one retry wins the takeover
                taken = await session.execute(
                    update(model)
                    .where(*self._key_clause(key), model.response.is_(None), model.created_at == row.created_at)
                    .values(created_at=now)
                )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return None  # abandoned before it created anything: this request carries it on
        raise ApiError(
            409, "idempotency_in_progress", "a request with this key is in progress", headers={"Retry-After": "1"}
        )

    async def _started_with(self, key: str) -> InstanceRead | None:
        """The instance that a start with the idempotency key ``key`` created (None: none yet)."""
        async with self.tenants.transaction(self.tenant) as session:
            found = (
                await session.execute(
                    select(Row.id).where(in_tenant(Row, self.tenant), Row.metadata_[IDEMPOTENCY_KEY].as_string() == key)
                )
            ).scalar_one_or_none()
        if found is None:
            return None
        return read_of(await self.tenants.engine(self.tenant).get_instance(found))

    async def _release_key(self, key: str) -> None:
        async with self.tenants.transaction(self.tenant) as session:
            await session.execute(
                delete(IdempotencyKeyModel).where(*self._key_clause(key), IdempotencyKeyModel.response.is_(None))
            )

    async def get(self, instance_id: UUID) -> InstanceRead:
        """One instance with its context and history (404 when not visible)."""
        async with self.tenants.transaction(self.tenant) as session:
            row = (
                await session.execute(select(Row).where(Row.id == instance_id, self._visible()))
            ).scalar_one_or_none()
            if row is None:
                raise not_found("instance")
            steps = (
                (
                    await session.execute(
                        select(StepExecutionModel)
                        .where(in_tenant(StepExecutionModel, self.tenant), StepExecutionModel.instance_id == row.id)
                        .order_by(StepExecutionModel.seq)
                    )
                )
                .scalars()
                .all()
            )
            tokens = (
                (
                    await session.execute(
                        select(CallbackTokenModel).where(
                            in_tenant(CallbackTokenModel, self.tenant), CallbackTokenModel.instance_id == row.id
                        )
                    )
                )
                .scalars()
                .all()
            )
        summary = msgspec.structs.asdict(_summary(row))
        return InstanceRead(
            **summary,
            context=dict(row.context_data or {}),
            steps=[
                StepRead(
                    step_name=s.step_name,
                    step_type=s.step_type,
                    status=s.status,
                    attempt=s.attempt,
                    started_at=s.started_at,
                    completed_at=s.completed_at,
                    error=s.error,
                    completed_by=s.completed_by,
                )
                for s in steps
            ],
            callbacks=[
                CallbackRead(step_name=t.step_name, url=f"/v1/callbacks/{t.token}", expires_at=t.expires_at)
                for t in tokens
            ],
        )

    async def list(
        self,
        *,
        workflow: str | None,
        status: str | None,
        created_by: str | None,
        started_after: datetime | None,
        started_before: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> InstancePage:
        """Instances newest first, filtered, a page at a time."""
        query = select(Row).where(self._visible())
        if workflow is not None:
            query = query.where(Row.workflow_name == workflow)
        if status is not None:
            query = query.where(Row.status == status)
        if created_by is not None:
            query = query.where(Row.created_by == created_by)
        if started_after is not None:
            query = query.where(Row.started_at >= started_after)
        if started_before is not None:
            query = query.where(Row.started_at < started_before)
        if cursor is not None:
            at_time, last = decode_time_and_id(cursor)
            query = query.where(or_(Row.started_at < at_time, and_(Row.started_at == at_time, Row.id < last)))
        query = query.order_by(Row.started_at.desc(), Row.id.desc()).limit(limit + 1)
        async with self.tenants.transaction(self.tenant) as session:
            rows = (await session.execute(query)).scalars().all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].started_at.isoformat(), str(rows[-1].id)) if more and rows else None
        return InstancePage(items=[_summary(r) for r in rows], next_cursor=next_cursor)

    async def _owned(self, instance_id: UUID) -> WorkflowInstanceModel:
        async with self.tenants.transaction(self.tenant) as session:
            row = (
                await session.execute(select(Row).where(Row.id == instance_id, self._visible()))
            ).scalar_one_or_none()
        if row is None:
            raise not_found("instance")
        await self.tenants.prepare(self.tenant, row.id)
        return row

    async def cancel(self, instance_id: UUID, reason: str) -> InstanceRead:
        """Cancel a running or waiting instance (409 when it has ended)."""
        await self._owned(instance_id)
        return read_of(await self.tenants.engine(self.tenant).cancel_workflow(instance_id, reason))

    async def retry(self, instance_id: UUID, from_step: str | None) -> InstanceRead:
        """Resume a failed instance (409 when it has not failed)."""
        await self._owned(instance_id)
        return read_of(await self.tenants.engine(self.tenant).retry(instance_id, from_step))

    async def mermaid(self, instance_id: UUID) -> str:
        """The definition's diagram with this instance's progress marked."""
        row = await self._owned(instance_id)
        instance = await self.tenants.engine(self.tenant).get_instance(row.id)
        return instance.to_mermaid()
