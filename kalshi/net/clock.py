"""Receive stamps: wall clock (µs since the epoch) from one injectable function, monotonic
time (µs) from Trio so virtual clocks in tests drive both consistently."""

from __future__ import annotations

import trio

from kalshi.clock import WallClock, system_wall_us

__all__ = ["WallClock", "mono_us", "system_wall_us", "trio_wall_us"]


def mono_us() -> int:
    return int(trio.current_time() * 1_000_000)


def trio_wall_us(epoch_us: int = 1_790_000_000_000_000) -> WallClock:
    """A wall clock that follows Trio's clock (for tests on ``autojump_clock``)."""
    return lambda: epoch_us + int(trio.current_time() * 1_000_000)
