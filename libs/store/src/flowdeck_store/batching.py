"""Group commit: the writes and loads of many concurrent calls of one tenant share transactions.

Every write is still one transaction with a fence per instance (see :mod:`flowdeck_store.writer`);
only several instances' writes ride in the same one, so a busy engine pays for a transaction
(and a commit's flush to disk) once per batch rather than once per instance. A batch holds at
most one change per instance; an instance whose fence fails gets its own
:class:`~flowdeck_engine.ConcurrencyError` while the others commit. When a batch fails as a whole
(a constraint, say), each of its writes is tried again alone, so one bad write fails only itself.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Sequence

K = TypeVar("K")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How big a batch may grow and how many batches of one tenant may be in flight at once.

    Smaller batches cost more transactions; one batch for everything in flight makes the calls
    move in lockstep (all of them run their Python while the database waits, then all wait on the
    database). 32 with 4 in flight lets one half's steps run while the other half is written: on
    the persistent benchmark (64 calls in flight) it did better than 64 in 5 of 7 paired runs of
    machine -> human -> machine (geometric mean +13%), and no worse on machine steps."""

    max_batch: int = 32
    max_parallel: int = 4


class Batcher(Generic[K, R]):
    """Runs ``run(items)`` over batches of submitted items; each submitter gets its own result.

    ``run`` returns one result per item (a value or an exception instance to raise). ``key``
    names the item's instance: two items with the same key never share a batch.
    """

    def __init__(
        self,
        run: Callable[[Sequence[K]], Awaitable[Sequence[R | BaseException]]],
        key: Callable[[K], Hashable],
        limits: BatchLimits,
    ) -> None:
        self._run = run
        self._key = key
        self._limits = limits
        self._queue: list[tuple[K, asyncio.Future[R]]] = []
        self._running = 0

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch running."""
        return not self._queue and self._running == 0

    async def submit(self, item: K) -> R:
        """Queue ``item`` and wait for its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._running < self._limits.max_parallel:
            self._running += 1
            # a clean context: the drain serves many callers and must not carry one caller's unit
            asyncio.get_running_loop().create_task(self._drain(), context=contextvars.Context())
        return await future

    def _take(self) -> list[tuple[K, asyncio.Future[R]]]:
        batch: list[tuple[K, asyncio.Future[R]]] = []
        rest: list[tuple[K, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for entry in self._queue:
            key = self._key(entry[0])
            if len(batch) < self._limits.max_batch and key not in keys:
                keys.add(key)
                batch.append(entry)
            else:
                rest.append(entry)
        self._queue = rest
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                await self._settle(batch)
        finally:
            self._running -= 1

    async def _settle(self, batch: list[tuple[K, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                results = [exc]
            else:  # find the culprit: each alone
                for entry in batch:
                    await self._settle([entry])
                return
        except BaseException as exc:  # cancellation: tell every waiter, then stop
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def by_tenant(factory: Callable[[Any], Batcher[K, R]], *, keep: int = 1_024) -> Callable[[Any], Batcher[K, R]]:
    """A lookup that makes one batcher per tenant on first use. Past ``keep`` tenants, the idle
    batchers are dropped when another tenant's is made (a busy one is kept: it has callers)."""
    batchers: dict[Any, Batcher[K, R]] = {}

    def get(tenant: Any) -> Batcher[K, R]:
        batcher = batchers.get(tenant)
        if batcher is None:
            if len(batchers) >= keep:
                for idle in [key for key, kept in batchers.items() if kept.idle]:
                    del batchers[idle]
            batcher = batchers[tenant] = factory(tenant)
        return batcher

    return get
