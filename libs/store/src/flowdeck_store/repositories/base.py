"""The tenant-filtered base of Flowdeck's repositories."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from advanced_alchemy.repository import SQLAlchemyAsyncRepository

from flowdeck_store.base import TenantOwned
from flowdeck_store.exceptions import TenantNotBoundError
from flowdeck_store.tenancy import session_tenant

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy import ColumnElement
    from sqlalchemy.ext.asyncio import AsyncSession

M = TypeVar("M", bound=TenantOwned)


class TenantRepository(SQLAlchemyAsyncRepository[M]):
    """An advanced-alchemy repository whose queries keep to the session's tenant.

    The tenant is the session's (see :func:`~flowdeck_store.bind_tenant`); every query made
    through :meth:`scoped` also filters on it. Row-level security holds on PostgreSQL either way:
    ``tenant_filter=False`` turns the application's own filter off (tests prove RLS alone holds).
    """

    def __init__(self, *, session: AsyncSession, tenant_filter: bool = True, **kwargs: Any) -> None:
        super().__init__(session=session, **kwargs)
        self.tenant_filter = tenant_filter

    @property
    def tenant_id(self) -> UUID:
        """The tenant this repository works for; raises :class:`TenantNotBoundError` when none."""
        tenant = session_tenant(self.session)  # type: ignore[arg-type]
        if tenant is None:
            raise TenantNotBoundError
        return tenant

    def scoped(self, *conditions: ColumnElement[bool]) -> list[ColumnElement[bool]]:
        """``conditions`` plus the tenant filter (unless it is switched off)."""
        if not self.tenant_filter:
            return list(conditions)
        return [self.model_type.tenant_id == self.tenant_id, *conditions]
