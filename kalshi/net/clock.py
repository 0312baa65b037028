"""Receive stamps: wall clock (µs since the epoch) from one injectable function, monotonic
time (µs) from Trio so virtual clocks in tests drive both consistently."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

__all__ = ["WallClock", "mono_us", "system_wall_us", "trio_wall_us"]

WallClock = Callable[[], int]


def system_wall_us() -> int:
    return time.time_ns() // 1000


def mono_us() -> int:
    return int(trio.current_time() * 1_000_000)


def trio_wall_us(epoch_us: int = 1_790_000_000_000_000) -> WallClock:
    """A wall clock that follows Trio's clock (for tests on ``autojump_clock``)."""
    return lambda: epoch_us + int(trio.current_time() * 1_000_000)
