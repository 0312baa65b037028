"""Prometheus metrics of the deduplicator and the exporter (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "CLOCK_OFFSET",
    "DUPLICATES",
    "EXPORT_BYTES",
    "EXPORT_FAILURES",
    "EXPORT_REWRITES",
    "EXPORT_WINDOWS",
    "GATHERER_UP",
    "HOLES",
    "LAG",
    "ROWS_MERGED",
    "SWITCHES",
]

LAG = Gauge(
    "kalshi_dedup_lag_seconds",
    "The receipt of the newest row the gatherer committed to the table minus the receipt"
    " of the newest of those rows the merge has read, both in the gatherer's own clock"
    " (docs/dedup.md, Metrics)",
    ["gatherer", "table"],
)
CLOCK_OFFSET = Gauge(
    "kalshi_dedup_gatherer_clock_offset_seconds",
    "The smallest received_at - exchange_ts of the gatherer's newest deltas: its clock's"
    " offset from the exchange's plus latency (reported apart from the lag)",
    ["gatherer"],
)
ROWS_MERGED = Counter(
    "kalshi_dedup_rows_merged", "Rows inserted into the production database", ["table"]
)
DUPLICATES = Counter(
    "kalshi_dedup_duplicates_dropped",
    "Gatherer rows dropped because production already had the event",
    ["table"],
)
SWITCHES = Counter(
    "kalshi_dedup_source_switches",
    "Times a market's order-book source moved to another gatherer",
)
HOLES = Counter(
    "kalshi_dedup_holes", "Order-book and channel stretches no gatherer recorded (written to gaps)"
)
GATHERER_UP = Gauge(
    "kalshi_dedup_gatherer_up",
    "1 when the gatherer's database answered the last pass",
    ["gatherer"],
)
EXPORT_BYTES = Counter("kalshi_export_bytes", "Parquet bytes exported", ["table"])
EXPORT_WINDOWS = Counter("kalshi_export_windows", "Windows exported", ["table"])
EXPORT_REWRITES = Counter(
    "kalshi_export_rewrites",
    "Exported windows written again because rows reached production after them",
    ["table"],
)
EXPORT_FAILURES = Counter(
    "kalshi_export_failures", "Failed export attempts (uploads retried or given up)"
)
