"""The outbox scan hands out only events that a subscription may want.

``flowdeck_claim_due`` (migration 0006) marks the unpublished events of tenants without an active
subscription as published, then returns the unpublished events for the scheduler to fan out. The
second statement also saw the events that the first skipped: those committed while it ran, and
those another transaction held locked. The scheduler fanned each one out alone, one transaction
per event, to find nobody to deliver to: at 500 instances a second that was 4% of the events and
most of the scheduler's CPU. Now it returns only events of tenants with an active subscription;
the others are marked at the next poll.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

EVENTS = """
    SELECT 'event'::text, o.tenant_id, o.id FROM workflow_outbox AS o
    WHERE o.published_at IS NULL
"""
SUBSCRIBED_EVENTS = """
    SELECT 'event'::text, o.tenant_id, o.id FROM workflow_outbox AS o
    WHERE o.published_at IS NULL
      AND EXISTS (SELECT 1 FROM webhook_subscriptions AS s WHERE s.tenant_id = o.tenant_id AND s.active)
"""


def _previous_claim() -> str:
    """Migration 0006's ``flowdeck_claim_due`` (from the module Alembic loaded), as ``CREATE OR REPLACE``."""
    webhooks = context.script.get_revision("0006")
    assert webhooks is not None
    claim: str = webhooks.module._claim()
    return claim


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    previous = _previous_claim()
    if previous.count(EVENTS) != 1:
        raise RuntimeError("migration 0006's event scan is not where this migration expects it")
    op.execute(previous.replace(EVENTS, SUBSCRIBED_EVENTS))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_previous_claim())
