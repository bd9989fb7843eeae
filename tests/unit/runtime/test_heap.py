"""The service processes' garbage collector settings (flowdeck_runtime.heap)."""

from __future__ import annotations

import subprocess
import sys

# Requests in flight hold a few thousand young objects at a time; each wave is let go, then the next.
_WAVES = """
import gc, sys
from flowdeck_runtime import heap
if sys.argv[1] == "settled":
    heap.settle()
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
for _ in range(200):
    in_flight = [{"id": i, "steps": [i, i + 1]} for i in range(1500)]
    del in_flight
print(len(collections), gc.get_freeze_count() > 0)
"""


def _collections(mode: str) -> tuple[int, bool]:
    out = subprocess.run([sys.executable, "-c", _WAVES, mode], capture_output=True, text=True, check=True).stdout
    count, frozen = out.split()
    return int(count), frozen == "True"


def test_a_settled_process_does_not_collect_for_waves_of_short_lived_objects() -> None:
    default, _ = _collections("default")
    settled, frozen = _collections("settled")
    assert default >= 100  # CPython's default threshold: a collection every 700 young objects
    assert settled == 0
    assert frozen  # and what start-up built is out of the collector's sight
