"""Prometheus metrics of the store (default registry), labelled by table."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCHES",
    "DB_UP",
    "DEAD_LETTERS",
    "FLUSH_ERRORS",
    "FLUSH_SECONDS",
    "QUEUE_ROWS",
    "ROWS_DUPLICATE",
    "ROWS_UPDATED",
    "ROWS_WRITTEN",
    "SPOOLED_BATCHES",
    "SPOOL_BYTES",
    "SPOOL_DAMAGED_LINES",
    "SPOOL_ERRORS",
    "SPOOL_OK",
    "SPOOL_ROWS",
    "zero_table",
]

ROWS_WRITTEN = Counter("kalshi_store_rows_written", "Rows new to the table", ["table"])
ROWS_UPDATED = Counter(
    "kalshi_store_rows_updated", "Stored rows replaced by a newer version (markets)", ["table"]
)
ROWS_DUPLICATE = Counter(
    "kalshi_store_rows_duplicate", "Rows skipped because their key was already stored", ["table"]
)
BATCHES = Counter("kalshi_store_batches", "Batches committed", ["table"])
FLUSH_SECONDS = Histogram(
    "kalshi_store_flush_seconds",
    "Time to write one batch (COPY + INSERT ... SELECT + commit)",
    ["table"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FLUSH_ERRORS = Counter(
    "kalshi_store_flush_errors",
    "Batch writes that failed because the database was unavailable",
    ["table"],
)
QUEUE_ROWS = Gauge(
    "kalshi_store_queue_rows", "Rows waiting in memory (channel + batches)", ["table"]
)
SPOOL_ROWS = Gauge("kalshi_store_spool_rows", "Rows waiting in the on-disk spool", ["table"])
SPOOL_BYTES = Gauge("kalshi_store_spool_bytes", "Bytes of the on-disk spool", ["table"])
SPOOLED_BATCHES = Counter("kalshi_store_spooled_batches", "Batches spilled to disk", ["table"])
DEAD_LETTERS = Counter(
    "kalshi_store_dead_letters",
    "Rows the database rejected, written to the dead-letter file",
    ["table"],
)
DB_UP = Gauge(
    "kalshi_store_db_up",
    "1 when the last database operation succeeded; 0 when it failed or none answered yet",
)
SPOOL_DAMAGED_LINES = Counter(
    "kalshi_store_spool_damaged_lines",
    "Spool file lines that failed their checksum or shape (skipped; file kept in quarantine/)",
    ["table"],
)
SPOOL_ERRORS = Counter(
    "kalshi_store_spool_errors",
    "Batches the spool disk refused (full, read-only); they stay in memory and are retried",
    ["table"],
)
SPOOL_OK = Gauge("kalshi_store_spool_ok", "1 when the last spool write succeeded, else 0")


def zero_table(table: str) -> None:
    """Create ``table``'s counters at 0, so each series exists from the start and an alert
    such as ``increase(kalshi_store_dead_letters_total[10m]) > 0`` sees the first one."""
    for counter in (
        ROWS_WRITTEN,
        ROWS_UPDATED,
        ROWS_DUPLICATE,
        BATCHES,
        FLUSH_ERRORS,
        SPOOLED_BATCHES,
        DEAD_LETTERS,
        SPOOL_DAMAGED_LINES,
        SPOOL_ERRORS,
    ):
        counter.labels(table=table)
