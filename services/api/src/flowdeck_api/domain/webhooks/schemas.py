"""Webhook schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Subscribe ``url`` (https) to ``event_types`` (none: every event of the tenant)."""

    url: Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
    event_types: Annotated[list[EventType], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)
    description: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class WebhookRead(msgspec.Struct, kw_only=True):
    """A subscription. ``secret`` (the HMAC-SHA256 signing key) is shown only when it is created."""

    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    created_at: datetime
    secret: str | None = None


class DeliveryRead(msgspec.Struct, kw_only=True):
    """One event's delivery to a subscription: ``pending``, ``delivered`` or ``failed``, and the last answer."""

    id: UUID
    event_id: UUID
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
