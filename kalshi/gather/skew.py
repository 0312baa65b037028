"""How far this machine's clock is from the exchange's, measured on the data itself.

Every timed row carries the exchange's time (trades, deltas, tickers: µs from ``ts_ms``)
and ours (``received_at``). ``received - exchange`` is our clock's offset plus the network
latency (never negative), so its minimum over a window estimates the offset from above: a
negative minimum means our clock is behind by at least that much. Each closed window sets
``kalshi_clock_offset_seconds`` and, past :data:`SKEW_WARN_S` either way, logs a warning
once (and once more when it is back). Pure bookkeeping: the caller passes both times.
"""

from __future__ import annotations

import logging

from kalshi.gather import metrics

__all__ = ["SKEW_WARN_S", "WINDOW_US", "ClockSkew"]

log = logging.getLogger("kalshi.gather")

SKEW_WARN_S = 1.0
WINDOW_US = 60_000_000


class ClockSkew:
    """Minimum of ``received - exchange`` per :data:`WINDOW_US` of receive time."""

    def __init__(self, window_us: int = WINDOW_US, warn_s: float = SKEW_WARN_S) -> None:
        self.window_us = window_us
        self.warn_us = int(warn_s * 1_000_000)
        self.offset_us: int | None = None  # the last closed window's minimum
        self._start: int | None = None
        self._min: int | None = None
        self.warned = False

    @property
    def offset_s(self) -> float | None:
        return None if self.offset_us is None else self.offset_us / 1e6

    def observe(self, received_us: int, exchange_us: int) -> None:
        if self._start is None:
            self._start = received_us
        elif received_us >= self._start + self.window_us:
            self._close()
            self._start = received_us
        offset = received_us - exchange_us
        if self._min is None or offset < self._min:
            self._min = offset

    def _close(self) -> None:
        if self._min is None:
            return
        self.offset_us, self._min = self._min, None
        metrics.CLOCK_OFFSET.set(self.offset_us / 1e6)
        off = abs(self.offset_us) > self.warn_us
        if off and not self.warned:
            way = "behind" if self.offset_us < 0 else "ahead of (or this far in latency from)"
            log.warning(
                "the local clock is at least %.3f s %s the exchange's (minimum of receive "
                "minus exchange time over %d s): correct the system clock (NTP)",
                abs(self.offset_us) / 1e6,
                way,
                self.window_us // 1_000_000,
            )
        elif not off and self.warned:
            log.info("the local clock agrees with the exchange's again")
        self.warned = off
