"""Callback lookup: the one cross-tenant read the callback route needs, and nothing more.

``POST /v1/callbacks/{token}`` carries no tenant: the token is its only credential. The SECURITY
DEFINER function ``flowdeck_callback_target(token)`` returns that token's tenant, instance, step
and expiry, and nothing else; the application role may execute it but still cannot read the
table across tenants. Because row-level security is forced on the table (it binds its owner too),
the owner, as whom the function runs, gets a SELECT-only policy on this table alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import re

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _app_role() -> str:
    role = context.get_x_argument(as_dictionary=True).get("app_role", "flowdeck_app")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise SystemExit(f"invalid role name {role!r}")
    return role


def upgrade() -> None:
    op.create_index("ix_workflow_callback_tokens_token", "workflow_callback_tokens", ["token"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE POLICY callback_lookup ON workflow_callback_tokens FOR SELECT TO CURRENT_USER USING (true)")
    op.execute(
        """
        CREATE FUNCTION flowdeck_callback_target(p_token text)
        RETURNS TABLE (tenant_id uuid, instance_id uuid, step_name varchar, expires_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT t.tenant_id, t.instance_id, t.step_name, t.expires_at
            FROM workflow_callback_tokens AS t WHERE t.token = p_token
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION flowdeck_callback_target(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION flowdeck_callback_target(text) TO {_app_role()}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS flowdeck_callback_target(text)")
        op.execute("DROP POLICY IF EXISTS callback_lookup ON workflow_callback_tokens")
    op.drop_index("ix_workflow_callback_tokens_token", table_name="workflow_callback_tokens")
