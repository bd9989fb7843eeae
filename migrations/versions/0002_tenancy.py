"""Tenancy: row-level security, enabled and forced, on every tenant table; the application role.

The application role (``flowdeck_app`` unless ``-x app_role=...``) is not a superuser, does not
bypass row-level security and owns nothing: it is granted DML on the tables. Log-in roles for the
API and the workers are made members of it by ops. PostgreSQL only (SQLite has no RLS).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import re

from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
TABLES = (
    "idempotency_keys",
    "workflow_callback_tokens",
    "workflow_definitions",
    "workflow_human_tasks",
    "workflow_instances",
    "workflow_outbox",
    "workflow_pending_work",
    "workflow_step_executions",
    "workflow_timers",
)
"""Tables whose rows carry ``tenant_id`` (``tenants`` itself is keyed by ``id``)."""


def _app_role() -> str:
    role = context.get_x_argument(as_dictionary=True).get("app_role", "flowdeck_app")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise SystemExit(f"invalid role name {role!r}")
    return role


def _policies() -> list[tuple[str, str]]:
    return [("tenants", "id"), *((table, "tenant_id") for table in TABLES)]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    app = _app_role()
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{app}') THEN "
        f"CREATE ROLE {app} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; END IF; END $$"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {app}")
    for table, key in _policies():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({key} = {TENANT}) WITH CHECK ({key} = {TENANT})")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    app = _app_role()
    for table, _ in reversed(_policies()):
        op.execute(f"REVOKE ALL ON {table} FROM {app}")
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {app}")
