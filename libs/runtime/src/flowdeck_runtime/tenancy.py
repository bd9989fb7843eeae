"""The API's own tenant clause, on top of PostgreSQL's row-level security.

Every query of the API's services keeps to the caller's tenant twice: through :func:`in_tenant`
here and through row-level security (the session is bound to the tenant). ``APP_FILTER`` exists
for one purpose: tests set it to False to prove that row-level security alone keeps tenants
apart (reliability scenario 10). Nothing else may touch it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import true

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy import ColumnElement

    from flowdeck_store import TenantOwned

APP_FILTER = True
"""Test-only switch: False drops the application's tenant clause (row-level security remains)."""


def in_tenant(model: type[TenantOwned], tenant: UUID) -> ColumnElement[bool]:
    """``model.tenant_id == tenant`` (or TRUE while a test has switched the filter off)."""
    return model.tenant_id == tenant if APP_FILTER else true()
