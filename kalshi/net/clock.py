"""Receive stamps: wall clock (µs since the epoch) from one injectable function, monotonic
time (µs) from Trio so virtual clocks in tests drive both consistently."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import trio

from kalshi.clock import WallClock, system_wall_us

__all__ = ["SKEW_HINT_S", "WallClock", "clock_hint", "mono_us", "system_wall_us", "trio_wall_us"]

SKEW_HINT_S = 5.0
"""A refused signature with the local clock this far from the exchange's blames the clock."""


def mono_us() -> int:
    return int(trio.current_time() * 1_000_000)


def clock_hint(server_date: str, body: str, local_us: int) -> str:
    """What to add to a 401 when the local clock is the likely cause, else ``""``.

    ``server_date``: the answer's HTTP ``Date`` header (1 s resolution); ``body``: its text;
    ``local_us``: the clock the request was signed with. The signature carries a timestamp
    the exchange checks against its own clock (kalshi-api.md §1, window undocumented): a body
    that says the timestamp is outside the window, or a ``Date`` more than
    :data:`SKEW_HINT_S` away, gives ``"; the local clock is 3600 s ahead of the exchange's
    ..."``.
    """
    skew: float | None = None
    if server_date:
        try:
            skew = local_us / 1e6 - parsedate_to_datetime(server_date).timestamp()
        except (TypeError, ValueError):
            skew = None
    says = "timestamp" in body.lower()
    if skew is not None and (says or abs(skew) >= SKEW_HINT_S):
        way = "ahead of" if skew > 0 else "behind"
        return (
            f"; the local clock is {abs(skew):.0f} s {way} the exchange's (its Date header):"
            " correct the system clock (NTP)"
        )
    if says:
        return (
            "; the exchange says the request timestamp is outside its window:"
            " check the local clock (NTP)"
        )
    return ""


def trio_wall_us(epoch_us: int = 1_790_000_000_000_000) -> WallClock:
    """A wall clock that follows Trio's clock (for tests on ``autojump_clock``)."""
    return lambda: epoch_us + int(trio.current_time() * 1_000_000)
