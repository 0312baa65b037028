"""The per-frame metrics of one connection, counted in plain integers on the receive path
and handed to Prometheus in batches.

A Prometheus ``inc``/``observe`` takes a lock and a few attribute lookups (~1 µs each,
three per frame); at a burst of 100 000 frames/s that alone is a tenth of a core. Here a
frame costs two dict/int updates and one bisect; :meth:`FrameMetrics.flush` adds the
totals to ``kalshi_ws_messages``, ``kalshi_ws_bytes`` and ``kalshi_latency_seconds``.
The connection flushes every :data:`FLUSH_SECONDS` of frames, from its keepalive loop
(so a quiet connection is at most a ping interval behind) and when the session ends.
Totals are exact; only their visibility is delayed.
"""

from __future__ import annotations

from bisect import bisect_left

from kalshi.gather import metrics

__all__ = ["FLUSH_SECONDS", "FrameMetrics"]

FLUSH_SECONDS = 0.25
_BOUNDS: tuple[float, ...] = tuple(metrics.LATENCY._upper_bounds)  # the last is +Inf


class FrameMetrics:
    """One connection's pending counts: ``frame(kind, size)`` per frame, ``latency(s)``
    per timed row (seconds, exchange time to hand-off), ``flush()`` to publish."""

    __slots__ = ("_bytes", "_channel", "_counters", "_kinds", "_latency", "_sum", "due")

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._counters = {"": metrics.BYTES.labels(channel)}
        self._kinds: dict[str, int] = {}
        self._bytes = 0
        self._latency = [0] * len(_BOUNDS)
        self._sum = 0.0
        self.due = 0.0  # Trio time of the next flush the receive loop owes

    def frame(self, kind: str, size: int) -> None:
        kinds = self._kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        self._bytes += size

    def latency(self, seconds: float) -> None:
        self._latency[bisect_left(_BOUNDS, seconds)] += 1
        self._sum += seconds

    def flush(self, now: float = 0.0) -> None:
        """Publish what is pending; the next flush is due :data:`FLUSH_SECONDS` after
        ``now`` (Trio time)."""
        self.due = now + FLUSH_SECONDS
        if self._bytes:
            self._counters[""].inc(self._bytes)
            self._bytes = 0
        if self._kinds:
            for kind, count in self._kinds.items():
                counter = self._counters.get(kind)
                if counter is None:
                    counter = self._counters[kind] = metrics.MESSAGES.labels(self._channel, kind)
                counter.inc(count)
            self._kinds = {}
        if self._sum or any(self._latency):
            # Histogram has no bulk observe: add to its buckets (per bucket, not cumulative,
            # as observe does) and its sum, exactly what as many observe() calls would add.
            for i, count in enumerate(self._latency):
                if count:
                    metrics.LATENCY._buckets[i].inc(count)
                    self._latency[i] = 0
            metrics.LATENCY._sum.inc(self._sum)
            self._sum = 0.0
