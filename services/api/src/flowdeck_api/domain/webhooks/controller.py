"""Webhook routes (admins): subscribe, list, read, remove, and read a subscription's delivery log."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from flowdeck_api.domain.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookRead
from flowdeck_api.domain.webhooks.service import WebhookService
from flowdeck_api.errors import responses
from flowdeck_api.security import ADMIN, principal_of


def provide_webhooks(request: Request[Any, Any, Any]) -> WebhookService:
    """The calling tenant's webhooks."""
    settings = request.app.state.settings
    return WebhookService(
        request.app.state.tenants, principal_of(request).tenant_id, allowed_hosts=settings.webhooks.allowed_hosts
    )


class WebhookController(Controller):
    """Event webhooks: each of the tenant's workflow events is POSTed, signed, to every matching endpoint."""

    path = "/webhooks"
    tags = ["webhooks"]
    guards = [ADMIN]
    dependencies = {"webhooks": Provide(provide_webhooks, sync_to_thread=False)}

    @post(
        "/",
        status_code=201,
        request_max_body_size=8_192,
        responses=responses(400, 403, 409, 413, 422),
        summary="Subscribe an endpoint to the tenant's events",
        description="Each event (of `event_types`, or all) is POSTed as JSON with a `Flowdeck-Signature: "
        "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.' + body>` header keyed with the returned `secret` "
        "(shown only now), `Flowdeck-Event` and `Flowdeck-Delivery` (stable across retries). Any 2xx "
        "answer delivers; otherwise it is retried with exponential backoff.",
    )
    async def create(self, data: JSONBody[WebhookCreate], webhooks: NamedDependency[WebhookService]) -> WebhookRead:
        """Create a subscription."""
        return await webhooks.create(data)

    @get("/", responses=responses(403), summary="The tenant's webhook subscriptions")
    async def list_all(self, webhooks: NamedDependency[WebhookService]) -> list[WebhookRead]:
        """Every subscription."""
        return await webhooks.all()

    @get("/{subscription_id:uuid}", responses=responses(403, 404), summary="One webhook subscription")
    async def get_one(self, subscription_id: FromPath[UUID], webhooks: NamedDependency[WebhookService]) -> WebhookRead:
        """One subscription (without its secret)."""
        return await webhooks.get(subscription_id)

    @delete("/{subscription_id:uuid}", status_code=204, responses=responses(403, 404), summary="Remove a webhook")
    async def remove(self, subscription_id: FromPath[UUID], webhooks: NamedDependency[WebhookService]) -> None:
        """Remove the subscription and its delivery log."""
        await webhooks.delete(subscription_id)

    @get(
        "/{subscription_id:uuid}/deliveries",
        responses=responses(400, 403, 404),
        summary="A webhook's delivery log, newest first",
    )
    async def deliveries(
        self,
        subscription_id: FromPath[UUID],
        webhooks: NamedDependency[WebhookService],
        status: FromQuery[Literal["pending", "delivered", "failed"] | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> list[DeliveryRead]:
        """Deliveries with their attempts and last answers."""
        return await webhooks.deliveries(subscription_id, status=status, limit=limit)
