"""The dispatcher of production engines: waits are rows, and the scheduler fires them.

An engine's :class:`~flowdeck_engine.ports.Dispatcher` schedules in-process wake-ups for timers,
deadlines and retry backoffs. In production every such wait is already a row of the change that
opened it (``workflow_timers``, or ``workflow_pending_work`` with ``not_before``) and the
scheduler process fires it from there, so the API and worker processes schedule nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime
    from uuid import UUID


class StoredWaits:
    """A dispatcher that leaves every wait to the scheduler (it is stored with the change)."""

    def schedule(self, instance_id: UUID, step: str, when: datetime, wake: Callable[[], Awaitable[None]]) -> None:
        """Nothing to do: the wait is a stored row that the scheduler fires."""

    def cancel(self, instance_id: UUID, step: str) -> None:
        """Nothing to do: the change that ended the wait removed its row."""


__all__ = ["StoredWaits"]
