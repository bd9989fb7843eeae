"""Idempotency keys: one external effect (or request) per key, per tenant."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 (SQLAlchemy reads Mapped[...] annotations at runtime)
from typing import Any

from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from flowdeck_store.base import TenantOwned


class IdempotencyKeyModel(TenantOwned):
    """A key already used in ``scope``, with the fingerprint of its request and the response given."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "scope", "key"),
        Index("ix_idempotency_keys_created", "created_at"),  # retention removes the oldest first
    )

    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(128), default=None)
    response: Mapped[Any | None] = mapped_column(JsonB, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
