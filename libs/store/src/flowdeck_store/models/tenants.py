"""Tenants: the customers whose rows every other table carries."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from flowdeck_store.base import AuditedBase


class TenantStatus(StrEnum):
    """Whether a tenant may use the service."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


class TenantModel(AuditedBase):
    """A tenant. Its ``id`` is the ``tenant_id`` of all its rows (and its own row-level security key)."""

    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)

    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.ACTIVE.value)
