"""End-to-end fixtures: PostgreSQL and Redis from the integration harness, the stack as processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack
from tests.integration.conftest import (  # noqa: F401 (fixtures)
    Database,
    database,
    postgres_admin_url,
    redis_url,
    truncate,
)


@pytest.fixture
def stack(
    database: Database,  # noqa: F811 (the fixture)
    redis_url: str,  # noqa: F811 (the fixture)
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    """A stack (nothing started yet); every process stopped, and the tables emptied, afterwards.

    A failing test prints the processes' logs.
    """
    home = tmp_path / "home"
    home.mkdir()
    stack = Stack(database, redis_url, home)
    try:
        yield stack
    finally:
        stack.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(stack.logs())
        asyncio.run(truncate(database.owner_url))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
