"""The system role: only the worker and the scheduler may call the cross-tenant scans.

Migration 0004 granted ``flowdeck_claim_due`` and ``flowdeck_instance_tenant`` to the app role,
so the API (which logs in as a member of it) could claim another tenant's due work or learn which
tenant owns an instance id. Now they are granted to the system role only (``flowdeck_system``
unless ``-x system_role=...``): a member of the app role (so row-level security binds it as it
binds the API) that the worker's and scheduler's log-in role is a member of, and the API's is not.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import re

from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCANS = ("flowdeck_claim_due(integer, integer, integer)", "flowdeck_instance_tenant(uuid)")


def _role(name: str, default: str) -> str:
    role = context.get_x_argument(as_dictionary=True).get(name, default)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise SystemExit(f"invalid role name {role!r}")
    return role


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    app, system = _role("app_role", "flowdeck_app"), _role("system_role", "flowdeck_system")
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{system}') THEN "
        f"CREATE ROLE {system} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; END IF; END $$"
    )
    op.execute(f"GRANT {app} TO {system}")
    for signature in SCANS:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {signature} FROM {app}")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {system}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    app, system = _role("app_role", "flowdeck_app"), _role("system_role", "flowdeck_system")
    for signature in SCANS:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {signature} FROM {system}")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {app}")
