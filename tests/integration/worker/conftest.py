"""Fixtures of the worker's and scheduler's tests."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Database


@pytest.fixture
def system_url(store_url: str, request: pytest.FixtureRequest) -> str:
    """SQLite, or PostgreSQL as the system role (the worker's and scheduler's: the scans are theirs)."""
    if store_url.startswith("sqlite"):
        return store_url
    database: Database = request.getfixturevalue("database")
    return database.system_url
