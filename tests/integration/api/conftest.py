"""The API over HTTP against the real PostgreSQL, as the application role (row-level security on)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.pool import NullPool

from flowdeck_api.app import create_app
from flowdeck_api.auth import mint_token
from flowdeck_runtime.settings import AuthSettings, DatabaseSettings, RedisSettings, Settings
from flowdeck_store import TenantModel, bind_tenant, create_engine, session_factory
from tests.integration.conftest import Database

ROOT = Path(__file__).resolve().parents[3]
EXPENSE = (ROOT / "examples/documents/expense-approval.yaml").read_bytes()
YAML = {"content-type": "application/yaml"}


@dataclass
class Api:
    client: AsyncTestClient[Any]
    settings: Settings
    database: Database
    tenants: list[uuid.UUID] = field(default_factory=list)

    async def tenant(self, slug: str = "acme", status: str = "active") -> uuid.UUID:
        tenant = uuid.uuid4()
        db = create_engine(self.database.app_url, poolclass=NullPool)
        try:
            async with session_factory(db)() as session:
                bind_tenant(session, tenant)
                async with session.begin():
                    session.add(TenantModel(id=tenant, slug=f"{slug}-{tenant.hex[:8]}", name=slug, status=status))
        finally:
            await db.dispose()
        return tenant

    def token(self, tenant: uuid.UUID, user: str, *roles: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
        s = self.settings.auth
        token = mint_token(
            s.dev_secret(),
            issuer=s.issuer,
            audience=s.audience,
            tenant_id=tenant,
            subject=user,
            roles=roles or ("member",),
            groups=groups,
        )
        return {"authorization": f"Bearer {token}"}


def make_settings(database: Database, secret_file: Path) -> Settings:
    return Settings(
        mode="production",
        database=DatabaseSettings(url=database.app_url, admin_url=database.owner_url),
        redis=RedisSettings(url=None),
        auth=AuthSettings(
            issuer="flowdeck-test",
            audience="flowdeck",
            algorithms=("HS256",),
            jwks_url=None,
            dev_secret_file=secret_file,
        ),
    )


@pytest.fixture
async def api(truncated: Database, tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(truncated, tmp_path / "dev-secret")
    async with AsyncTestClient(create_app(settings)) as client:
        yield Api(client, settings, truncated)
