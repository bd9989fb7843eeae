"""Catalog checks: RLS on every tenant table, an application role with no way around it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flowdeck_store import metadata
from tests.integration.conftest import APP, SYSTEM, Database

TENANT_TABLES = {t.name for t in metadata.sorted_tables if "tenant_id" in t.c} | {"tenants"}


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in (await conn.execute(text(sql))).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_every_table_is_a_tenant_table() -> None:
    assert set(metadata.tables) == TENANT_TABLES
    assert len(TENANT_TABLES) == 13


def test_every_tenant_table_has_rls_enabled_forced_and_a_policy(database: Database) -> None:
    rows = _query(
        database.owner_url,
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
        "  (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation'), "
        "  (SELECT string_agg(pg_get_expr(p.polqual, p.polrelid), ' ') FROM pg_policy p "
        "   WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'",
    )
    found = {name: (enabled, forced, policies, qual) for name, enabled, forced, policies, qual in rows}
    assert set(found) == TENANT_TABLES
    for name, (enabled, forced, policies, qual) in found.items():
        assert enabled and forced, name
        assert policies == 1, name
        assert "NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid" in str(qual), (name, qual)
    others = _query(
        database.owner_url,
        "SELECT c.relname, p.polname, p.polcmd::text, array(SELECT rolname FROM pg_roles WHERE oid = ANY(p.polroles)) "
        "FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.polname <> 'tenant_isolation'",
    )
    # The others: the owner may read callback tokens (flowdeck_callback_target), and read and
    # claim timers, pending work, outbox events and webhook deliveries, read subscriptions and
    # instances (flowdeck_claim_due and flowdeck_instance_tenant, the scheduler's and worker's
    # SECURITY DEFINER scans), and read and delete idempotency keys and delete outbox events
    # (flowdeck_prune, the scheduler's retention); none is the app role's, none inserts.
    assert sorted((table, name, cmd) for table, name, cmd, _ in others) == [
        ("idempotency_keys", "system_prune", "d"),
        ("idempotency_keys", "system_prune_read", "r"),
        ("webhook_deliveries", "system_scan_claim", "w"),
        ("webhook_deliveries", "system_scan_read", "r"),
        ("webhook_subscriptions", "system_scan_read", "r"),
        ("workflow_callback_tokens", "callback_lookup", "r"),
        ("workflow_instances", "system_scan_read", "r"),
        ("workflow_outbox", "system_prune", "d"),
        ("workflow_outbox", "system_scan_claim", "w"),
        ("workflow_outbox", "system_scan_read", "r"),
        ("workflow_pending_work", "system_scan_claim", "w"),
        ("workflow_pending_work", "system_scan_read", "r"),
        ("workflow_timers", "system_scan_claim", "w"),
        ("workflow_timers", "system_scan_read", "r"),
    ]
    for _, _, _, roles in others:
        assert APP not in roles and "public" not in roles


def test_the_app_role_cannot_get_around_rls(database: Database) -> None:
    ((superuser, bypass, can_create_role, can_create_db),) = _query(
        database.owner_url,
        f"SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = '{APP}'",
    )
    assert (superuser, bypass, can_create_role, can_create_db) == (False, False, False, False)
    owned = _query(
        database.owner_url,
        "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        f"WHERE r.rolname = '{APP}' UNION ALL "
        f"SELECT p.proname FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE r.rolname = '{APP}' UNION ALL "
        f"SELECT n.nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE r.rolname = '{APP}'",
    )
    assert owned == []
    memberships = _query(
        database.owner_url,
        "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles a ON a.oid = m.member "
        f"JOIN pg_roles b ON b.oid = m.roleid WHERE a.rolname = '{APP}'",
    )
    assert memberships == []  # it inherits nothing (no owner role, no bypass) from anyone


def test_only_the_system_role_may_call_the_cross_tenant_scans(database: Database) -> None:
    scans = (
        "flowdeck_claim_due(integer, integer, integer)",
        "flowdeck_instance_tenant(uuid)",
        "flowdeck_prune(timestamptz, timestamptz, integer)",
    )
    for role in (APP, SYSTEM, "public"):
        allowed = _query(
            database.owner_url,
            " UNION ALL ".join(f"SELECT has_function_privilege('{role}', '{scan}', 'EXECUTE')" for scan in scans),
        )
        assert allowed == [(role == SYSTEM,)] * len(scans), role
    # The API's role gets "permission denied", not the tenant of another tenant's instance.
    with pytest.raises(DBAPIError, match="permission denied"):
        _query(database.app_url, "SELECT flowdeck_instance_tenant(gen_random_uuid())")
    with pytest.raises(DBAPIError, match="permission denied"):
        _query(database.app_url, "SELECT * FROM flowdeck_prune(now(), now(), 1)")
    assert _query(database.system_url, "SELECT flowdeck_instance_tenant(gen_random_uuid())") == [(None,)]
    (memberships,) = _query(
        database.owner_url,
        "SELECT array(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles a ON a.oid = m.member "
        f"JOIN pg_roles b ON b.oid = m.roleid WHERE a.rolname = '{SYSTEM}')",
    )
    assert memberships == ([APP],)  # row-level security binds it as it binds the API


def test_every_unique_index_includes_tenant_id(database: Database) -> None:
    rows = _query(
        database.owner_url,
        "SELECT t.relname, i.relname, ix.indisprimary, "
        "  array(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = ANY(ix.indkey)) "
        "FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = 'public' AND ix.indisunique AND t.relname <> 'alembic_version'",
    )
    assert rows
    offenders = []
    for table, index, primary, columns in rows:
        if primary and list(columns) == ["id"]:
            continue  # random UUID primary keys reveal nothing about other tenants
        key = "id" if table == "tenants" else "tenant_id"
        if key not in columns and not (table == "tenants" and index == "uq_tenants_slug"):
            offenders.append((table, index, columns))
    assert offenders == []
