"""The inbox index: ``workflow_task_candidates``, one row per principal a human task is routed to.

``u:<user>`` for an assigned task, ``g:<group>`` per candidate group of an unassigned one, ``*``
when it has none (see ``flowdeck_store.inbox``), with the task's status and due time, indexed as
``(tenant_id, principal, status, due_key, task_id)``: a user's inbox page is one short ordered
index range per principal instead of a scan of the tenant's tasks. Existing tasks are indexed
here. A tenant table: row-level security enabled and forced, the app role granted.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import re

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
TABLE = "workflow_task_candidates"

BACKFILL_POSTGRESQL = """
INSERT INTO workflow_task_candidates (tenant_id, task_id, principal, status, due_key)
SELECT t.tenant_id, t.id, p.principal, t.status, COALESCE(t.due_at, '9999-01-01 00:00:00+00'::timestamptz)
FROM workflow_human_tasks AS t CROSS JOIN LATERAL (
    SELECT 'u:' || t.assignee_id WHERE t.assignee_id IS NOT NULL
    UNION SELECT 'g:' || g FROM jsonb_array_elements_text(t.candidate_groups) AS g WHERE t.assignee_id IS NULL
    UNION SELECT '*' WHERE t.assignee_id IS NULL AND jsonb_array_length(t.candidate_groups) = 0
) AS p(principal)
"""
BACKFILL_SQLITE = """
INSERT INTO workflow_task_candidates (tenant_id, task_id, principal, status, due_key)
SELECT t.tenant_id, t.id, p.principal, t.status, COALESCE(t.due_at, '9999-01-01 00:00:00.000000')
FROM workflow_human_tasks AS t JOIN (
    SELECT id, 'u:' || assignee_id AS principal FROM workflow_human_tasks WHERE assignee_id IS NOT NULL
    UNION SELECT w.id, 'g:' || g.value FROM workflow_human_tasks AS w, json_each(w.candidate_groups) AS g
        WHERE w.assignee_id IS NULL
    UNION SELECT id, '*' FROM workflow_human_tasks
        WHERE assignee_id IS NULL AND json_array_length(candidate_groups) = 0
) AS p ON p.id = t.id
"""


def _app_role() -> str:
    role = context.get_x_argument(as_dictionary=True).get("app_role", "flowdeck_app")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise SystemExit(f"invalid role name {role!r}")
    return role


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("tenant_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("task_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_key", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["workflow_human_tasks.id"],
            name=op.f("fk_workflow_task_candidates_task_id_workflow_human_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workflow_task_candidates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "task_id", "principal", name=op.f("pk_workflow_task_candidates")),
    )
    op.create_index(
        "ix_workflow_task_candidates_inbox", TABLE, ["tenant_id", "principal", "status", "due_key", "task_id"]
    )
    if op.get_bind().dialect.name != "postgresql":
        op.execute(BACKFILL_SQLITE)
        return
    # The owner is bound by the forced policies too: let it read every tenant's tasks for the
    # backfill, inside this transaction only (nobody else sees the window).
    op.execute("ALTER TABLE workflow_human_tasks NO FORCE ROW LEVEL SECURITY")
    op.execute(BACKFILL_POSTGRESQL)
    op.execute("ALTER TABLE workflow_human_tasks FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {TABLE} USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {_app_role()}")


def downgrade() -> None:
    op.drop_index("ix_workflow_task_candidates_inbox", table_name=TABLE)
    op.drop_table(TABLE)
