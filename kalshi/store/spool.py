"""The on-disk spool: batches the database could not take yet, one file per batch.

Layout: ``<spool dir>/<table>/<seq:020d>.batch``. A file is written as ``.<name>.tmp``,
fsync'd, renamed into place and the directory fsync'd, so a file with the final name is
always complete. Format: a JSON header line ``{"format": 1, "table", "columns", "rows"}``
then one JSON array per row. Sequence numbers are shared with in-memory batches, so
draining lowest-first preserves arrival order across memory, disk and restarts.

A spool belongs to one database: ``<spool dir>/DATABASE`` names it (``host:port/dbname``),
and a store opened on another database refuses a spool that still holds rows.

Leftover ``*.tmp`` files (a process killed mid-write; their rows were never acknowledged
as spooled) are moved to ``<spool dir>/<table>/partial/`` for inspection.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict

from kalshi.errors import StoreError
from kalshi.models.rows import Row
from kalshi.store.schema import TableSpec

__all__ = [
    "Batch",
    "Spool",
    "claim_spool",
    "database_identity",
    "dump_json",
    "load_json",
    "lock_directory",
]

log = logging.getLogger("kalshi.store")

_SUFFIX = ".batch"
_FORMAT = 1


class Batch(NamedTuple):
    seq: int
    rows: list[Row]


def dump_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits (a bad row) still spool, exactly
        return json.dumps(value, separators=(",", ":")).encode()


def load_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def lock_directory(directory: Path) -> IO[bytes]:
    """Hold an exclusive lock on ``directory`` for this process (released at exit)."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = (directory / ".lock").open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StoreError(f"{directory}: spool in use by another process") from None
    return handle


def database_identity(url: str) -> str:
    """Which database ``url`` names, without connecting: ``host:port/dbname`` (user and
    password left out: they do not change where rows go). Raises :class:`StoreError` for a
    URL libpq cannot parse."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"database url: {exc}") from None
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


def claim_spool(root: Path, identity: str, spooled_rows: int) -> None:
    """Record that the spool at ``root`` belongs to the database ``identity``.

    A spool holding rows for another database is refused (:class:`StoreError`): its rows go
    only where they were received for. An empty spool (or one from before identities were
    recorded) is claimed. Blocking."""
    path = root / "DATABASE"
    try:
        owner = path.read_text().strip()
    except FileNotFoundError:
        owner = ""
    if owner and owner != identity and spooled_rows:
        raise StoreError(
            f"{root}: the spool holds {spooled_rows} rows for database {owner}, not {identity};"
            " drain them there (run against that database) or use another spool.dir"
        )
    if owner != identity:
        tmp = root / ".DATABASE.tmp"
        tmp.write_text(identity + "\n")
        os.replace(tmp, path)
        _fsync_dir(root)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """One table's spool directory. Thread-safe; every method blocks on disk I/O."""

    def __init__(self, root: Path, spec: TableSpec) -> None:
        self.spec = spec
        self.directory = root / spec.name
        self._lock = threading.Lock()
        self._index: dict[int, tuple[int, int]] = {}  # seq -> (rows, bytes)

    # --- state ----------------------------------------------------------------------------

    def load(self) -> None:
        """Index the files already on disk (from an earlier run)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        index: dict[int, tuple[int, int]] = {}
        for path in self.directory.iterdir():
            if path.name.endswith(".tmp"):
                partial = self.directory / "partial"
                partial.mkdir(exist_ok=True)
                path.rename(partial / path.name.lstrip("."))
                log.warning("%s: incomplete spool file moved to %s", path, partial)
                continue
            if not path.name.endswith(_SUFFIX) or not path.stem.isdigit():
                continue
            with path.open("rb") as handle:
                header = load_json(handle.readline())
            index[int(path.stem)] = (int(header["rows"]), path.stat().st_size)
        with self._lock:
            self._index = index
        if index:
            log.info(
                "%s: %d spooled batches (%d rows) to drain",
                self.spec.name,
                len(index),
                sum(r for r, _ in index.values()),
            )

    @property
    def rows(self) -> int:
        with self._lock:
            return sum(r for r, _ in self._index.values())

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(b for _, b in self._index.values())

    @property
    def files(self) -> int:
        with self._lock:
            return len(self._index)

    def seqs(self) -> list[int]:
        with self._lock:
            return list(self._index)

    def head(self) -> int | None:
        """The lowest spooled sequence number."""
        with self._lock:
            return min(self._index) if self._index else None

    def max_seq(self) -> int:
        with self._lock:
            return max(self._index) if self._index else 0

    # --- I/O ------------------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def write(self, batch: Batch) -> None:
        """Append ``batch`` durably (fsync'd file and directory)."""
        header = {
            "format": _FORMAT,
            "table": self.spec.name,
            "columns": list(self.spec.columns),
            "rows": len(batch.rows),
        }
        parts = [dump_json(header)]
        parts.extend(dump_json(row) for row in batch.rows)
        data = b"\n".join(parts) + b"\n"
        final = self._path(batch.seq)
        temp = self.directory / f".{final.name}.tmp"
        try:
            with temp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            temp.rename(final)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise StoreError(f"{final}: cannot spool batch: {exc.strerror}") from exc
        with self._lock:
            self._index[batch.seq] = (len(batch.rows), len(data))

    def read(self, seq: int) -> Batch:
        path = self._path(seq)
        try:
            lines = path.read_bytes().splitlines()
        except OSError as exc:
            raise StoreError(f"{path}: cannot read spooled batch: {exc.strerror}") from exc
        header = load_json(lines[0])
        if header.get("columns") != list(self.spec.columns) or header.get("rows") != len(lines) - 1:
            raise StoreError(f"{path}: spooled batch does not match table {self.spec.name}")
        make = self.spec.row_type
        return Batch(seq, [make(*load_json(line)) for line in lines[1:]])

    def remove(self, seq: int) -> None:
        path = self._path(seq)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot remove drained batch: {exc.strerror}") from exc
        with self._lock:
            self._index.pop(seq, None)
