"""Redis commands of concurrent callers, sent together: one round trip per batch, not per command.

A busy process (a worker with many jobs in flight, the API with many starts) asks Redis for many
small things at once. :class:`Pipelined` puts the commands asked for while a pipeline is on its
way into the next one, so they cost one round trip together; each caller gets the replies of its
own commands, or the error of the pipeline they rode in.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline


T = TypeVar("T")


async def with_script(redis: Redis, source: str, call: Callable[[str], Awaitable[T]]) -> T:
    """``call(sha)``, which runs the Lua script ``source`` by its SHA1 (EVALSHA, in a pipeline
    say). When Redis does not have the script (the first use, a restart, a SCRIPT FLUSH), it is
    loaded and ``call`` made once more."""
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    try:
        return await call(sha)
    except NoScriptError:
        await redis.script_load(source)
        return await call(sha)


class Pipelined:
    """Pipelines on ``redis`` shared by concurrent callers (``transaction``: each one a MULTI/EXEC)."""

    def __init__(self, redis: Redis, *, transaction: bool = False) -> None:
        self._redis = redis
        self._transaction = transaction
        self._pending: list[tuple[Callable[[Pipeline], object], asyncio.Future[list[Any]]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None

    async def run(self, add: Callable[[Pipeline], object]) -> list[Any]:
        """``add(pipe)`` queues commands on ``pipe``; their replies."""
        return await self.send(add)

    def send(self, add: Callable[[Pipeline], object]) -> asyncio.Future[list[Any]]:
        """Like :meth:`run`, without waiting: the future of the replies. The commands go out in
        order with those queued before and after them."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((add, future))
        if not self._flushing:
            self._flushing = True
            # a clean context: the flush serves many callers (kept, so it is not collected meanwhile)
            self._task = loop.create_task(self._flush(), context=contextvars.Context())
        return future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    async with self._redis.pipeline(transaction=self._transaction) as pipe:
                        counts = []
                        for add, _ in batch:
                            queued = len(pipe)
                            add(pipe)
                            counts.append(len(pipe) - queued)
                        replies = await pipe.execute()
                except BaseException as exc:  # each caller gets the error; cancellation ends the flush
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                at = 0
                for (_, future), count in zip(batch, counts, strict=True):
                    if not future.done():
                        future.set_result(replies[at : at + count])
                    at += count
        finally:
            self._flushing = False


__all__ = ["Pipelined", "with_script"]
