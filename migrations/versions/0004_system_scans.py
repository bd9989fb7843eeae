"""System scans: the scheduler's cross-tenant claims, through SECURITY DEFINER functions only.

The scheduler fires timers, webhook timeouts and task escalations of every tenant, and re-sends
the machine steps whose job Redis lost or whose worker's lease expired. The application role it
runs as cannot read across tenants; instead it may execute two functions that return
``(tenant_id, id)`` pairs and nothing else, and it then handles each item under that tenant.

- ``flowdeck_claim_due(limit, claim_seconds, quiet_seconds)`` claims due items in one statement,
  each once across concurrent schedulers (``FOR UPDATE SKIP LOCKED``): timers whose ``fire_at``
  passed (claimed by moving ``fire_at`` ``claim_seconds`` ahead, so an item whose handler died is
  claimed again after that), and pending work that is due and either unleased and untouched for
  ``quiet_seconds`` (its job was lost) or leased with an expired lease (its worker died; the
  lease is cleared and its fence bumped, so the late worker commits nothing). Kinds: ``timer``
  (id: the timer row), ``work`` (id: the instance).
- ``flowdeck_instance_tenant(id)``: the tenant of an instance, for the worker to tell a job
  whose tenant does not match its instance (a security event) from an instance that is gone.

Row-level security is forced, so the owner, as whom the functions run, gets policies for exactly
the reads and updates they make.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import re

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

POLICIES = (
    ("workflow_timers", "system_scan_read", "SELECT"),
    ("workflow_timers", "system_scan_claim", "UPDATE"),
    ("workflow_pending_work", "system_scan_read", "SELECT"),
    ("workflow_pending_work", "system_scan_claim", "UPDATE"),
    ("workflow_instances", "system_scan_read", "SELECT"),
)
"""(table, policy, command): what the owner may do across tenants, for the functions below."""

CLAIM = """
CREATE FUNCTION flowdeck_claim_due(p_limit integer, p_claim_seconds integer, p_quiet_seconds integer)
RETURNS TABLE (kind text, tenant_id uuid, id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT t.id FROM workflow_timers AS t
        WHERE t.fire_at <= now()
        ORDER BY t.fire_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE workflow_timers AS t
        SET fire_at = now() + make_interval(secs => p_claim_seconds), updated_at = now()
        FROM due WHERE t.id = due.id
        RETURNING t.tenant_id, t.id
    )
    SELECT 'timer'::text, c.tenant_id, c.id FROM claimed AS c;

    RETURN QUERY
    WITH stuck AS (
        SELECT w.id FROM workflow_pending_work AS w
        WHERE (w.not_before IS NULL OR w.not_before <= now())
          AND ((w.lease_owner IS NULL AND w.updated_at <= now() - make_interval(secs => p_quiet_seconds))
               OR w.lease_expires_at <= now())
        ORDER BY w.updated_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE workflow_pending_work AS w
        SET lease_owner = NULL, lease_expires_at = NULL,
            fence = CASE WHEN w.lease_owner IS NULL THEN w.fence ELSE w.fence + 1 END,
            updated_at = now()
        FROM stuck WHERE w.id = stuck.id
        RETURNING w.tenant_id, w.instance_id
    )
    SELECT DISTINCT 'work'::text, c.tenant_id, c.instance_id FROM claimed AS c;
END
$$
"""

INSTANCE_TENANT = """
CREATE FUNCTION flowdeck_instance_tenant(p_id uuid)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT i.tenant_id FROM workflow_instances AS i WHERE i.id = p_id $$
"""


def _app_role() -> str:
    role = context.get_x_argument(as_dictionary=True).get("app_role", "flowdeck_app")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise SystemExit(f"invalid role name {role!r}")
    return role


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, command in POLICIES:
        using = "USING (true)"
        check = " WITH CHECK (true)" if command == "UPDATE" else ""
        op.execute(f"CREATE POLICY {name} ON {table} FOR {command} TO CURRENT_USER {using}{check}")
    op.execute(CLAIM)
    op.execute(INSTANCE_TENANT)
    app = _app_role()
    for signature in ("flowdeck_claim_due(integer, integer, integer)", "flowdeck_instance_tenant(uuid)"):
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {app}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS flowdeck_instance_tenant(uuid)")
        op.execute("DROP FUNCTION IF EXISTS flowdeck_claim_due(integer, integer, integer)")
        for table, name, _ in POLICIES:
            op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
