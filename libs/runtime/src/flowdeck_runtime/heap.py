"""The garbage collector of a long-running service process.

A service imports and builds most of what it will ever hold before it serves (modules, classes,
the app, the ORM's mappings): :func:`settle` moves all of that out of the collector's sight, so
the collections that the steady stream of short-lived request and job objects sets off no longer
walk it again and again. Young objects are still collected as usual.

It also makes collections rarer (:data:`THRESHOLDS`). With CPython's default (a collection every
700 net allocations) the API and a worker spent 8-10% of their CPU collecting at 500 instances a
second while finding almost nothing to free (about 5 objects a collection: the services make
little cyclic garbage). Worse, the objects of requests and jobs in flight live through several
collections and so reach the oldest generation, whose full collections (every 2-5 seconds) paused
the event loop for 30-110 ms, a pause every instance in flight then waited out. At
:data:`THRESHOLDS` the same load spent about an eighth of that time collecting, with no full
collection in 40 seconds: a wave of in-flight work no longer reaches the threshold.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)
"""``gc.set_threshold`` of a service process (CPython's default: 700, 10, 10)."""


def settle() -> None:
    """Collect once, then freeze what survived and collect less often (call when start-up is done,
    before serving)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


__all__ = ["THRESHOLDS", "settle"]
