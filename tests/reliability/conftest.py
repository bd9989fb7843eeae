"""Reliability fixtures: the end-to-end stack (processes on real PostgreSQL and Redis)."""

from __future__ import annotations

from tests.e2e.conftest import (  # noqa: F401 (fixtures and the report hook)
    database,
    postgres_admin_url,
    pytest_runtest_makereport,
    redis_url,
    stack,
)
