"""The declarative base of Flowdeck's tables, and the columns every tenant table shares."""

from __future__ import annotations

from uuid import UUID  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)

from advanced_alchemy.base import AdvancedDeclarativeBase, CommonTableAttributes, create_registry
from advanced_alchemy.mixins import AuditColumns, UUIDPrimaryKey
from sqlalchemy import ForeignKey
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

orm_registry = create_registry()
"""Flowdeck's own registry: its tables never mix with other advanced-alchemy models in a process."""


class Base(CommonTableAttributes, AdvancedDeclarativeBase, AsyncAttrs):
    """Root of Flowdeck's models (its own metadata, advanced-alchemy's naming convention and types)."""

    __abstract__ = True
    registry = orm_registry
    metadata = orm_registry.metadata


class AuditedBase(UUIDPrimaryKey, AuditColumns, Base):
    """A model with a UUID primary key and timezone-aware ``created_at``/``updated_at``."""

    __abstract__ = True


class TenantOwned(AuditedBase):
    """A row that belongs to one tenant: row-level security keys on ``tenant_id``."""

    __abstract__ = True

    @declared_attr
    def tenant_id(cls) -> Mapped[UUID]:
        return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, sort_order=-90)


class InstanceOwned(TenantOwned):
    """A row of one instance: ``instance_id`` references the instance, and deleting the instance
    (or its tenant, whose instances go with it) deletes the row.

    ``tenant_id`` has no foreign key of its own: the row's instance is its tenant's (the store
    writes an instance's rows in the statement that writes the instance, under the tenant's
    row-level security). A foreign key to ``tenants`` would make PostgreSQL lock the tenant's one
    row (``FOR KEY SHARE``) for every row written, a lock that every writing transaction of the
    tenant shares with the others through a multixact (migration 0010).
    """

    __abstract__ = True

    @declared_attr
    def tenant_id(cls) -> Mapped[UUID]:
        return mapped_column(nullable=False, sort_order=-90)

    instance_id: Mapped[UUID] = mapped_column(ForeignKey("workflow_instances.id", ondelete="CASCADE"))


metadata = orm_registry.metadata
"""The metadata alembic migrates."""
