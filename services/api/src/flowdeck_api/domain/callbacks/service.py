"""Callbacks: an external system resumes a waiting webhook step with its single-use token."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text

from flowdeck_api.errors import not_found
from flowdeck_store import CallbackTokenModel, TenantModel, TenantStatus

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncEngine

    from flowdeck_runtime.tenants import Tenants

_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


class CallbackService:
    """Finds a token's instance and step (across tenants, through the one function allowed to)
    and delivers the payload under that instance's tenant."""

    def __init__(self, tenants: Tenants, db_engine: AsyncEngine) -> None:
        self.tenants = tenants
        self.db_engine = db_engine

    async def _target(self, token: str) -> tuple[UUID, UUID, str, datetime | None] | None:
        async with self.db_engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                query: Any = text(
                    "SELECT tenant_id, instance_id, step_name, expires_at FROM flowdeck_callback_target(:token)"
                ).bindparams(token=token)
            else:  # the embedded SQLite database has no row-level security to step around
                t = CallbackTokenModel
                query = select(t.tenant_id, t.instance_id, t.step_name, t.expires_at).where(t.token == token)
            row = (await connection.execute(query)).first()
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def deliver(self, token: str, payload: dict[str, Any]) -> UUID:
        """Resume the step waiting for ``token`` with ``payload``; 404 for an unknown, used or
        expired token alike (a caller learns nothing about tokens it does not hold)."""
        target = await self._target(token) if _TOKEN.fullmatch(token) else None
        if target is None:
            raise not_found("callback")
        tenant, instance_id, step, expires_at = target
        if expires_at is not None and expires_at.replace(tzinfo=expires_at.tzinfo or UTC) <= datetime.now(UTC):
            raise not_found("callback")
        async with self.tenants.transaction(tenant) as session:
            status = (await session.execute(select(TenantModel.status).where(TenantModel.id == tenant))).scalar()
        if status != TenantStatus.ACTIVE.value and status != TenantStatus.ACTIVE:
            raise not_found("callback")
        engine = await self.tenants.prepare(tenant, instance_id)
        await engine.receive_callback(instance_id, step, payload)
        return instance_id
