"""A tenant's webhook subscriptions and their delivery log."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select

from flowdeck_api.domain.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookRead
from flowdeck_api.errors import ApiError, not_found
from flowdeck_runtime.tenancy import in_tenant
from flowdeck_store import WebhookDeliveryModel, WebhookSubscriptionModel

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

    from flowdeck_runtime.tenants import Tenants

Subscription = WebhookSubscriptionModel
Delivery = WebhookDeliveryModel
MAX_SUBSCRIPTIONS = 50


def _read(row: WebhookSubscriptionModel, secret: str | None = None) -> WebhookRead:
    return WebhookRead(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types or []),
        description=row.description,
        active=row.active,
        created_at=row.created_at,
        secret=secret,
    )


def _delivery(row: WebhookDeliveryModel) -> DeliveryRead:
    return DeliveryRead(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
    )


class WebhookService:
    """One tenant's subscriptions; ``allowed_hosts`` may use plain HTTP (development, tests)."""

    def __init__(self, tenants: Tenants, tenant: UUID, *, allowed_hosts: frozenset[str]) -> None:
        self.tenants = tenants
        self.tenant = tenant
        self.allowed_hosts = allowed_hosts

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host or parts.username or parts.password or parts.fragment:
            raise ApiError(422, "webhook.url_invalid", "the URL needs a host and no credentials or fragment")
        if parts.scheme != "https" and not (parts.scheme == "http" and host in self.allowed_hosts):
            raise ApiError(422, "webhook.url_invalid", "webhook endpoints must be https:// URLs")

    async def create(self, data: WebhookCreate) -> WebhookRead:
        """A new active subscription, with its signing secret (shown this once)."""
        self._check_url(data.url)
        secret = f"whsec_{secrets.token_urlsafe(32)}"
        async with self.tenants.transaction(self.tenant) as session:
            count = len(
                (await session.execute(select(Subscription.id).where(in_tenant(Subscription, self.tenant))))
                .scalars()
                .all()
            )
            if count >= MAX_SUBSCRIPTIONS:
                raise ApiError(409, "webhook.too_many", f"a tenant may have at most {MAX_SUBSCRIPTIONS} webhooks")
            row = Subscription(
                tenant_id=self.tenant,
                url=data.url,
                secret=secret,
                event_types=sorted(set(data.event_types)),
                description=data.description,
                active=True,
            )
            session.add(row)
            await session.flush()
            return _read(row, secret)

    async def all(self) -> list[WebhookRead]:
        """Every subscription, oldest first."""
        async with self.tenants.transaction(self.tenant) as session:
            rows = (
                await session.execute(
                    select(Subscription)
                    .where(in_tenant(Subscription, self.tenant))
                    .order_by(Subscription.created_at, Subscription.id)
                )
            ).scalars()
            return [_read(row) for row in rows]

    async def get(self, subscription_id: UUID) -> WebhookRead:
        """One subscription; 404 when the tenant has none with that id."""
        async with self.tenants.transaction(self.tenant) as session:
            return _read(await self._one(session, subscription_id))

    async def delete(self, subscription_id: UUID) -> None:
        """Remove a subscription and its delivery log."""
        async with self.tenants.transaction(self.tenant) as session:
            await session.delete(await self._one(session, subscription_id))

    async def deliveries(self, subscription_id: UUID, *, status: str | None, limit: int) -> list[DeliveryRead]:
        """The subscription's deliveries, newest first."""
        async with self.tenants.transaction(self.tenant) as session:
            await self._one(session, subscription_id)
            query = (
                select(Delivery)
                .where(in_tenant(Delivery, self.tenant), Delivery.subscription_id == subscription_id)
                .order_by(Delivery.created_at.desc(), Delivery.id)
                .limit(limit)
            )
            if status is not None:
                query = query.where(Delivery.status == status)
            return [_delivery(row) for row in (await session.execute(query)).scalars()]

    async def _one(self, session: AsyncSession, subscription_id: UUID) -> WebhookSubscriptionModel:
        row = (
            await session.execute(
                select(Subscription).where(in_tenant(Subscription, self.tenant), Subscription.id == subscription_id)
            )
        ).scalar_one_or_none()
        if row is None:
            raise not_found("webhook")
        return row
