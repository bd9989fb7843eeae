"""Outbound webhooks: subscriptions, the delivery log, and the scheduler's outbox scan.

``webhook_subscriptions`` (a tenant's endpoints, the event types each wants, its signing secret)
and ``webhook_deliveries`` (one row per event and subscription: status, attempts, next attempt,
the last answer) are tenant tables: row-level security enabled and forced, the app role granted.

``flowdeck_claim_due`` (migration 0004) learns two more kinds, still in ONE statement per poll:
``event``: an unpublished outbox event of a tenant that has an active subscription (the scheduler
fans it out to deliveries under its tenant, locking the event row; events of tenants without one
are marked published right here), and ``delivery``: a pending delivery whose next attempt is due
(claimed by moving ``next_attempt_at`` ahead, as timers are).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import re

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
TABLES = ("webhook_subscriptions", "webhook_deliveries")
POLICIES = (
    ("workflow_outbox", "system_scan_read", "SELECT"),
    ("workflow_outbox", "system_scan_claim", "UPDATE"),
    ("webhook_subscriptions", "system_scan_read", "SELECT"),
    ("webhook_deliveries", "system_scan_read", "SELECT"),
    ("webhook_deliveries", "system_scan_claim", "UPDATE"),
)
"""(table, policy, command): what the owner may do across tenants, for flowdeck_claim_due."""

OUTBOX_CLAIMS = """
    UPDATE workflow_outbox AS o SET published_at = now()
    WHERE o.id IN (
        SELECT u.id FROM workflow_outbox AS u
        WHERE u.published_at IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM webhook_subscriptions AS s WHERE s.tenant_id = u.tenant_id AND s.active
          )
        FOR UPDATE SKIP LOCKED
    );

    RETURN QUERY
    SELECT 'event'::text, o.tenant_id, o.id FROM workflow_outbox AS o
    WHERE o.published_at IS NULL
    ORDER BY o.published_at, o.occurred_at
    LIMIT p_limit;

    RETURN QUERY
    WITH due AS (
        SELECT d.id FROM webhook_deliveries AS d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
        ORDER BY d.status, d.next_attempt_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE webhook_deliveries AS d
        SET next_attempt_at = now() + make_interval(secs => p_claim_seconds), updated_at = now()
        FROM due WHERE d.id = due.id
        RETURNING d.tenant_id, d.id
    )
    SELECT 'delivery'::text, c.tenant_id, c.id FROM claimed AS c;
"""
"""What this migration adds to migration 0004's ``flowdeck_claim_due``, before its ``END``."""


def _app_role() -> str:
    role = context.get_x_argument(as_dictionary=True).get("app_role", "flowdeck_app")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise SystemExit(f"invalid role name {role!r}")
    return role


def _previous_claim() -> str:
    """Migration 0004's ``flowdeck_claim_due`` (from the module Alembic loaded), as ``CREATE OR REPLACE``."""
    scans = context.script.get_revision("0004")
    assert scans is not None
    claim: str = scans.module.CLAIM
    return claim.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def _claim() -> str:
    """``flowdeck_claim_due`` with the outbox's claims: migration 0004's body, then ours."""
    previous = _previous_claim()
    end = previous.rindex("END\n$$")
    return previous[:end] + OUTBOX_CLAIMS + previous[end:]


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column(
            "event_types",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "cockroachdb")
            .with_variant(advanced_alchemy.types.json.ORA_JSONB(), "oracle")
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_subscriptions_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_index(
        "ix_webhook_subscriptions_tenant_active", "webhook_subscriptions", ["tenant_id", "active"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("subscription_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("event_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["workflow_outbox.id"],
            name=op.f("fk_webhook_deliveries_event_id_workflow_outbox"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_deliveries_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("tenant_id", "subscription_id", "event_id", name=op.f("uq_webhook_deliveries_tenant_id")),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"], unique=False)
    op.create_index(
        "ix_webhook_deliveries_tenant_subscription",
        "webhook_deliveries",
        ["tenant_id", "subscription_id", "created_at"],
        unique=False,
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    app = _app_role()
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app}")
    for table, name, command in POLICIES:
        check = " WITH CHECK (true)" if command == "UPDATE" else ""
        op.execute(f"CREATE POLICY {name} ON {table} FOR {command} TO CURRENT_USER USING (true){check}")
    op.execute(_claim())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_previous_claim())
        for table, name, _ in POLICIES:
            op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    op.drop_index("ix_webhook_deliveries_tenant_subscription", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_subscriptions_tenant_active", table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
