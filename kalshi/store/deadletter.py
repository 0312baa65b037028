"""Dead letters: rows the database rejected, kept with the error, one JSON line each.

File: ``<dead_letter_dir>/<table>.jsonl``; each line is
``{"table", "error", "at_us", "columns", "row"}``, fsync'd before the batch it came from
is acknowledged.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from kalshi.clock import WallClock, system_wall_us
from kalshi.errors import StoreError
from kalshi.models.rows import Row
from kalshi.store.schema import TableSpec
from kalshi.store.spool import dump_json

__all__ = ["DeadLetters"]


class DeadLetters:
    """Append-only dead-letter files. Thread-safe; blocks on disk I/O."""

    def __init__(self, directory: Path, *, wall_us: WallClock = system_wall_us) -> None:
        self.directory = directory
        self._wall_us = wall_us
        self._lock = threading.Lock()

    def check(self) -> None:
        """Create the directory and make sure a file can be written in it (blocking), so an
        unusable ``spool.dead_letter_dir`` stops the start rather than the first rejected
        row. Raises :class:`StoreError` naming the directory."""
        probe = self.directory / ".probe"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.open("ab").close()
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"{self.directory}: cannot use the dead-letter directory: {exc.strerror or exc}"
            ) from None

    def path(self, table: str) -> Path:
        return self.directory / f"{table}.jsonl"

    def write(self, spec: TableSpec, row: Row, error: str) -> None:
        record = {
            "table": spec.name,
            "error": error,
            "at_us": self._wall_us(),
            "columns": list(spec.columns),
            "row": list(row),
        }
        path = self.path(spec.name)
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                with path.open("ab") as handle:
                    handle.write(dump_json(record) + b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise StoreError(f"{path}: cannot write dead letter: {exc.strerror}") from exc
