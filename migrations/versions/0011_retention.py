"""Retention: the scheduler removes old published events and old idempotency keys.

The outbox keeps every event after it was published, with its webhook delivery log, and every
``Idempotency-Key`` of ``POST /v1/instances`` was kept for good: tables that only grow.
``flowdeck_prune(events_before, keys_before, limit)`` (SECURITY DEFINER, granted to the system
role only, as the scans of migration 0007) removes across tenants up to ``limit`` each of:

- outbox events published before ``events_before`` that no delivery is still pending for; their
  deliveries go with them (the foreign key's cascade, found through the new ``event_id`` index);
- idempotency keys created before ``keys_before`` (oldest first, through the new index).

A NULL bound removes nothing of that kind. It returns ``(kind, removed)`` rows: ``event`` and
``idempotency_key``. Row-level security is forced, so the owner, as whom it runs, gets policies
for exactly the reads and deletes it makes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SIGNATURE = "flowdeck_prune(timestamptz, timestamptz, integer)"
POLICIES = (
    ("workflow_outbox", "system_prune", "DELETE"),
    ("idempotency_keys", "system_prune_read", "SELECT"),
    ("idempotency_keys", "system_prune", "DELETE"),
)
"""(table, policy, command): what the owner may do across tenants, for flowdeck_prune. It reads
the outbox and the deliveries through migration 0006's ``system_scan_read`` policies."""

PRUNE = """
CREATE FUNCTION flowdeck_prune(p_events_before timestamptz, p_keys_before timestamptz, p_limit integer)
RETURNS TABLE (kind text, removed integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM workflow_outbox AS o
    WHERE o.id IN (
        SELECT e.id FROM workflow_outbox AS e
        WHERE e.published_at < p_events_before
          AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries AS d WHERE d.event_id = e.id AND d.status = 'pending'
          )
        ORDER BY e.published_at
        LIMIT p_limit
    );
    GET DIAGNOSTICS n = ROW_COUNT;
    kind := 'event';
    removed := n;
    RETURN NEXT;

    DELETE FROM idempotency_keys AS k
    WHERE k.id IN (
        SELECT i.id FROM idempotency_keys AS i
        WHERE i.created_at < p_keys_before
        ORDER BY i.created_at
        LIMIT p_limit
    );
    GET DIAGNOSTICS n = ROW_COUNT;
    kind := 'idempotency_key';
    removed := n;
    RETURN NEXT;
END
$$
"""


def _system_role() -> str:
    """The system role, named as migration 0007 (from the module Alembic loaded) names it."""
    roles = context.script.get_revision("0007")
    assert roles is not None
    role: str = roles.module._role("system_role", "flowdeck_system")
    return role


def upgrade() -> None:
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"], unique=False)
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"], unique=False)
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, command in POLICIES:
        op.execute(f"CREATE POLICY {name} ON {table} FOR {command} TO CURRENT_USER USING (true)")
    op.execute(PRUNE)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {_system_role()}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
        for table, name, _ in POLICIES:
            op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_index("ix_webhook_deliveries_event", table_name="webhook_deliveries")
