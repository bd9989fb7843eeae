"""The services' PostgreSQL connections plan every statement for its own arguments.

asyncpg keeps statements prepared per pooled connection; a generic plan PostgreSQL caches for one
(after five executions) would outlive the table sizes it was picked for.
"""

from __future__ import annotations

from sqlalchemy import text

from flowdeck_store import create_engine
from tests.integration.conftest import Database


async def test_statements_are_planned_per_execution(database: Database) -> None:
    engine = create_engine(database.app_url)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SHOW plan_cache_mode"))).scalar_one() == "force_custom_plan"
    finally:
        await engine.dispose()
