"""The one wall clock: µs since the Unix epoch, as an injectable function.

Every component that stamps a wall time (receive times, watermarks, dead letters, dedup
cursors, export records, the simulator) takes a :data:`WallClock` whose default is
:func:`system_wall_us`, so a test's clock reaches all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["WallClock", "system_wall_us"]

WallClock = Callable[[], int]
"""A function returning the wall time, µs since the Unix epoch (integer)."""


def system_wall_us() -> int:
    """The system's wall time, µs since the Unix epoch."""
    return time.time_ns() // 1000
