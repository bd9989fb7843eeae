"""Job notifications: a waiting ``POST /v1/jobs/fetch`` wakes when its tenant's jobs change.

A long poll for external jobs asked the database four times a second for as long as it waited.
Now PostgreSQL notifies channel ``flowdeck_jobs`` with the tenant's id when callback-token rows
(external jobs and webhook waits) are inserted, and when a lease on one is given back; the API
listens on one connection per process and wakes that tenant's waiting fetches, which otherwise
look again only every few seconds (for leases that lapse on their own). A statement-level
trigger: one notification per tenant per statement, sent when the transaction commits.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NOTIFY = """
CREATE FUNCTION flowdeck_notify_jobs() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('flowdeck_jobs', t.tenant_id::text)
    FROM (SELECT DISTINCT n.tenant_id FROM new_rows AS n WHERE n.lease_owner IS NULL) AS t;
    RETURN NULL;
END
$$
"""
TRIGGERS = {
    "workflow_callback_tokens_inserted": "INSERT",
    "workflow_callback_tokens_released": "UPDATE",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(NOTIFY)
    for name, event in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON workflow_callback_tokens "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION flowdeck_notify_jobs()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON workflow_callback_tokens")
    op.execute("DROP FUNCTION IF EXISTS flowdeck_notify_jobs()")
