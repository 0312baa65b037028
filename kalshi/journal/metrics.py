"""Prometheus metrics of the journal (default registry, ``kalshi_journal_`` prefix)."""

from __future__ import annotations

import weakref
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

BYTES_WRITTEN = Counter(
    "kalshi_journal_bytes_written", "Journal line bytes written to files (before compression)"
)
RECORDS = Counter("kalshi_journal_records", "Journal records (frames and markers) written")
FILES_ROTATED = Counter("kalshi_journal_files_rotated", "Journal files closed and rotated")
FLUSH_SECONDS = Histogram(
    "kalshi_journal_flush_seconds",
    "Time to write one buffered batch to disk",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
BUFFER_BYTES = Gauge(
    "kalshi_journal_buffer_bytes", "Journal bytes buffered in memory, not yet written"
)
_writers: weakref.WeakSet[Any] = weakref.WeakSet()
BUFFER_BYTES.set_function(lambda: float(sum(w.buffered_bytes for w in list(_writers))))


def track(writer: Any) -> None:
    """Count ``writer.buffered_bytes`` in ``kalshi_journal_buffer_bytes`` while it lives."""
    _writers.add(writer)


PRESSURE = Counter(
    "kalshi_journal_pressure_records",
    "Records appended while the buffer was over its bound (disk slower than the feed)",
)
READS_PAUSED = Counter(
    "kalshi_journal_reads_paused",
    "Times a connection stopped reading its socket because the journal's memory was full",
)
UPLOADS = Counter("kalshi_journal_uploads", "Closed journal files uploaded to S3")
UPLOAD_FAILURES = Counter(
    "kalshi_journal_upload_failures", "Failed S3 upload attempts of journal files"
)
DISK_OK = Gauge(
    "kalshi_journal_disk_ok", "1 when the last journal write succeeded, 0 while the disk refuses"
)
WRITE_ERRORS = Counter(
    "kalshi_journal_write_errors",
    "Journal flushes the disk refused (full, read-only); the records stay buffered and retried",
)
UPLOAD_BACKLOG = Gauge(
    "kalshi_journal_upload_backlog", "Closed journal files not uploaded yet (queued or retrying)"
)
