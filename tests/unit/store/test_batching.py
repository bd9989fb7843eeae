"""Batchers per tenant: made on first use, idle ones dropped past the limit, busy ones kept."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flowdeck_store.batching import Batcher, BatchLimits, by_tenant


def test_idle_batchers_are_dropped_past_the_limit_and_busy_ones_kept() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def run(items: Sequence[int]) -> list[int]:
            await release.wait()
            return [item * 2 for item in items]

        made: list[str] = []

        def factory(tenant: str) -> Batcher[int, int]:
            made.append(tenant)
            return Batcher(run, lambda item: item, BatchLimits())

        get = by_tenant(factory, keep=2)
        busy = get("a")
        pending = asyncio.ensure_future(busy.submit(21))
        await asyncio.sleep(0)
        assert not busy.idle
        assert get("b").idle
        get("c")  # past the limit: "b" (idle) goes, "a" (busy) stays
        assert get("a") is busy
        get("b")
        assert made == ["a", "b", "c", "b"]
        release.set()
        assert await pending == 42
        assert busy.idle

    asyncio.run(main())
