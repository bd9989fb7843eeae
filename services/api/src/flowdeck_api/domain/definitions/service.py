"""Definitions: upload (validated in full before anything is stored), versions, activation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from flowdeck_api.domain.definitions.schemas import (
    DefinitionRead,
    DefinitionSummary,
    DefinitionVersions,
    GraphEdge,
    GraphNode,
    GraphRead,
)
from flowdeck_api.errors import ApiError, not_found
from flowdeck_engine.documents import load_document
from flowdeck_engine.registry import version_key
from flowdeck_runtime.tenancy import in_tenant
from flowdeck_store import WorkflowDefinitionModel
from flowdeck_store.changes import definition_row_id

if TYPE_CHECKING:
    from uuid import UUID

    from flowdeck_engine import WorkflowDefinition
    from flowdeck_engine.documents import Syntax
    from flowdeck_runtime.tenants import Tenants

Model = WorkflowDefinitionModel


def _summary(row: WorkflowDefinitionModel) -> DefinitionSummary:
    return DefinitionSummary(
        name=row.name,
        version=row.version,
        description=row.description,
        is_active=row.is_active,
        created_at=row.created_at,
    )


def graph_of(definition: WorkflowDefinition, mermaid: str | None = None) -> GraphRead:
    """The graph of a compiled definition (``mermaid`` overrides the plain diagram)."""
    return GraphRead(
        mermaid=mermaid or definition.get_graph().to_mermaid(),
        initial_step=definition.initial_step,
        terminal_steps=sorted(definition.terminal_steps),
        nodes=[GraphNode(name=name, type=step.step_type.value) for name, step in definition.steps.items()],
        edges=[
            GraphEdge(
                source=e.source,
                target=e.target,
                condition=e.condition if isinstance(e.condition, str) else None,
                default=e.default,
                on_timeout=e.on_timeout,
            )
            for e in definition.edges
        ],
    )


class DefinitionService:
    """A tenant's workflow definitions."""

    def __init__(self, tenants: Tenants, tenant: UUID) -> None:
        self.tenants = tenants
        self.tenant = tenant

    async def upload(self, body: bytes, syntax: Syntax) -> DefinitionRead:
        """Validate a document and store it as a new, active version (409 when that version exists)."""
        parsed, definition = load_document(body, syntax=syntax, platform=self.tenants.platform)
        document = msgspec.to_builtins(parsed)
        try:
            async with self.tenants.transaction(self.tenant) as session:
                row = Model(
                    id=definition_row_id(self.tenant, definition.name, definition.version),
                    tenant_id=self.tenant,
                    name=definition.name,
                    version=definition.version,
                    description=definition.description or None,
                    definition_json=document,
                    is_active=True,
                )
                session.add(row)
        except IntegrityError:
            raise ApiError(
                409,
                "definition_exists",
                f"workflow {definition.name!r} version {definition.version!r} exists; versions are immutable",
            ) from None
        return DefinitionRead(**msgspec.structs.asdict(_summary(row)), document=document)

    async def latest(self, *, active_only: bool = True, limit: int = 200) -> list[DefinitionSummary]:
        """The latest version of every workflow (by semantic version)."""
        async with self.tenants.transaction(self.tenant) as session:
            query = select(Model).where(in_tenant(Model, self.tenant))
            if active_only:
                query = query.where(Model.is_active.is_(True))
            rows = (await session.execute(query)).scalars().all()
        latest: dict[str, WorkflowDefinitionModel] = {}
        for row in rows:
            best = latest.get(row.name)
            if best is None or version_key(row.version) > version_key(best.version):
                latest[row.name] = row
        return [_summary(latest[name]) for name in sorted(latest)][:limit]

    async def versions(self, name: str) -> DefinitionVersions:
        """Every version of ``name``, oldest first (404 when there is none)."""
        async with self.tenants.transaction(self.tenant) as session:
            rows = (
                (await session.execute(select(Model).where(in_tenant(Model, self.tenant), Model.name == name)))
                .scalars()
                .all()
            )
        if not rows:
            raise not_found(f"workflow {name!r}")
        ordered = sorted(rows, key=lambda r: version_key(r.version))
        return DefinitionVersions(name=name, versions=[_summary(r) for r in ordered])

    async def get(self, name: str, version: str) -> DefinitionRead:
        """One version with its document."""
        row = await self._row(name, version)
        return DefinitionRead(**msgspec.structs.asdict(_summary(row)), document=row.definition_json)

    async def set_active(self, name: str, version: str, active: bool) -> DefinitionSummary:
        """Allow or stop new instances on this version (running ones always finish on it)."""
        async with self.tenants.transaction(self.tenant) as session:
            result = await session.execute(
                update(Model)
                .where(in_tenant(Model, self.tenant), Model.name == name, Model.version == version)
                .values(is_active=active)
                .returning(Model)
            )
            row = result.scalar_one_or_none()
        if row is None:
            raise not_found(f"workflow {name!r} version {version!r}")
        return _summary(row)

    async def graph(self, name: str, version: str) -> GraphRead:
        """The graph of one version."""
        await self._row(name, version)
        return graph_of(await self.tenants.definition(self.tenant, name, version))

    async def _row(self, name: str, version: str) -> WorkflowDefinitionModel:
        async with self.tenants.transaction(self.tenant) as session:
            row = (
                await session.execute(
                    select(Model).where(in_tenant(Model, self.tenant), Model.name == name, Model.version == version)
                )
            ).scalar_one_or_none()
        if row is None:
            raise not_found(f"workflow {name!r} version {version!r}")
        return row
