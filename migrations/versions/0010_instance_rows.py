"""An instance's rows no longer reference ``tenants`` themselves: their instance does.

Each of the tables below had two foreign keys: ``tenant_id`` to ``tenants`` and ``instance_id``
to ``workflow_instances``. PostgreSQL checks both for each row written, and the tenant check
locks the tenant's one ``tenants`` row (``FOR KEY SHARE``): every writing transaction of a tenant
shares that lock with the others (a multixact), for every step, event and piece of work it
writes. The instance's own key to ``tenants`` stays, and deletes still cascade (an instance's
rows with it, a tenant's instances with the tenant). That the row's tenant is its instance's is
the store's doing: it writes them in one statement, under the tenant's row-level security.

(A composite key ``(tenant_id, instance_id)`` to the instance was tried: PostgreSQL's cached plan
for its check can pick a ``tenant_id``-only index and walk the tenant's instances per row.)

On SQLite the tables are rebuilt (batch mode; migrations run with foreign keys off there).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = (
    "workflow_callback_tokens",
    "workflow_human_tasks",
    "workflow_outbox",
    "workflow_pending_work",
    "workflow_step_executions",
    "workflow_timers",
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_tenant_id_tenants", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_tenant_id_tenants", "tenants", ["tenant_id"], ["id"], ondelete="CASCADE"
            )
