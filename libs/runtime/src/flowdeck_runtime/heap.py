"""The garbage collector of a long-running service process.

A service imports and builds most of what it will ever hold before it serves (modules, classes,
the app, the ORM's mappings): :func:`settle` moves all of that out of the collector's sight, so
the collections that the steady stream of short-lived request and job objects sets off no longer
walk it again and again. Young objects are still collected as usual.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect once, then freeze what survived (call when start-up is done, before serving)."""
    gc.collect()
    gc.freeze()


__all__ = ["settle"]
