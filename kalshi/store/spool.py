"""The on-disk spool: batches the database could not take yet, one file per batch.

Layout: ``<spool dir>/<table>/<seq:020d>.batch``. A file is written as ``.<name>.tmp``,
fsync'd, renamed into place and the directory fsync'd, so a file with the final name is
always complete. Format 2: every line is ``<crc32 of the JSON, 8 hex digits> <JSON>``; the
first line is the header ``{"format": 2, "table", "columns", "rows"}``, then one JSON array
per row. Format 1 files (no checksums, from older versions) are still read. Sequence
numbers are shared with in-memory batches, so draining lowest-first preserves arrival
order across memory, disk and restarts.

Every line is verifiable, so damage costs only the damaged lines: a file with a flipped
byte, a bad header or a truncated tail is read for every line whose checksum holds; the
file is copied to ``<spool dir>/<table>/quarantine/`` and each bad line is logged with its
file, line number and byte offset and counted (``kalshi_store_spool_damaged_lines``).
Leftover ``*.tmp`` files (a process killed mid-write) are read the same way: their good
rows are spooled again under their sequence number, the file is kept in ``partial/``.

A spool belongs to one database: ``<spool dir>/DATABASE`` names it (``host:port/dbname``),
and a store opened on another database refuses a spool that still holds rows.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import zlib
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict

from kalshi.errors import StoreError
from kalshi.models.rows import Row
from kalshi.store import metrics
from kalshi.store.schema import TableSpec

__all__ = [
    "Batch",
    "Damage",
    "Spool",
    "claim_spool",
    "database_identity",
    "dump_json",
    "load_json",
    "lock_directory",
]

log = logging.getLogger("kalshi.store")

_SUFFIX = ".batch"
_FORMAT = 2


class Batch(NamedTuple):
    seq: int
    rows: list[Row]


class Damage(NamedTuple):
    """One unreadable line of a spool file: 1-based line number, byte offset, why."""

    line_no: int
    offset: int
    reason: str


def _seal_line(value: Any) -> bytes:
    body = dump_json(value)
    return b"%08x " % zlib.crc32(body) + body


def _open_line(line: bytes, checked: bool) -> Any:
    """The JSON value of one line; raises ``ValueError`` when its checksum or JSON is bad."""
    if checked:
        if len(line) < 9 or line[8:9] != b" ":
            raise ValueError("no checksum")
        body = line[9:]
        try:
            expected = int(line[:8], 16)
        except ValueError:
            raise ValueError("no checksum") from None
        if zlib.crc32(body) != expected:
            raise ValueError("checksum mismatch")
        line = body
    try:
        return load_json(line)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None


def parse_batch(data: bytes, spec: TableSpec) -> tuple[list[Row], list[Damage]]:
    """The rows of a spool file's bytes that verify, and the damage found (pure).

    A bad header does not cost the rows: they carry their own checksums and the directory
    names the table. A header row count above the rows found (a truncated file) is damage.
    """
    rows: list[Row] = []
    damage: list[Damage] = []
    lines = data.split(b"\n")
    truncated = 0
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        damage.append(Damage(len(lines), len(data) - len(lines[-1]), "truncated line"))
        lines.pop()
        truncated = 1
    checked = not data.startswith(b"{")  # format 1 had no checksums
    offset = 0
    declared: int | None = None
    width, row_type, crc32, loads = len(spec.columns), spec.row_type, zlib.crc32, orjson.loads
    for index, line in enumerate(lines):
        if checked and index:
            # The common line, inline: a row whose checksum and JSON are good gives the
            # value _open_line gives; anything else takes the general path below.
            body = line[9:]
            try:
                value = (
                    loads(body) if line[8:9] == b" " and crc32(body) == int(line[:8], 16) else None
                )
            except ValueError:  # a bad checksum's digits, orjson.JSONDecodeError
                value = None
            if type(value) is list and len(value) == width:
                rows.append(row_type(*value))
                offset += len(line) + 1
                continue
        where = (index + 1, offset)
        offset += len(line) + 1
        try:
            value = _open_line(line, checked)
        except ValueError as exc:
            damage.append(Damage(*where, str(exc)))
            continue
        if index == 0:
            if (
                not isinstance(value, dict)
                or value.get("columns") != list(spec.columns)
                or value.get("table") != spec.name
            ):
                # A verified header of another shape: a misplaced file, not a flipped byte.
                reason = f"header does not match table {spec.name}; no row read"
                return [], [Damage(*where, reason)]
            declared = value.get("rows") if isinstance(value.get("rows"), int) else None
            continue
        if not isinstance(value, list) or len(value) != len(spec.columns):
            damage.append(Damage(*where, f"expected {len(spec.columns)} values"))
            continue
        rows.append(spec.row_type(*value))
    present = max(len(lines) - 1, 0) + truncated
    if declared is not None and declared > present:
        damage.append(Damage(len(lines) + 1, len(data), f"{declared - present} rows missing"))
    return rows, damage


def _as_array(value: Any) -> list[Any]:
    """orjson's ``default``: a row (a ``NamedTuple``, which orjson does not take) as the JSON
    array of its values, as ``json.dumps`` writes it."""
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dump_json(value: Any) -> bytes:
    """``value`` as compact JSON; a row (``NamedTuple``) as the array of its values.

    orjson first: a row costs 0.5 µs there against 8.6 µs through ``json`` (a spilled
    batch is written when the gatherer is shortest of CPU: 13 % of a CPU-short gatherer's
    samples went to spooling rows through ``json``, 2026-12-02). ``json`` only for what orjson
    refuses, integers beyond 64 bits (a bad row), which still spool, exactly."""
    try:
        return orjson.dumps(value, default=_as_array)
    except TypeError:
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
        temps: list[Path] = []
        for path in self.directory.iterdir():
            if path.name.endswith(".tmp"):
                temps.append(path)
                continue
            if not path.name.endswith(_SUFFIX) or not path.stem.isdigit():
                continue
            with path.open("rb") as handle:
                rows = sum(1 for _ in handle) - 1
            index[int(path.stem)] = (max(rows, 0), path.stat().st_size)
        with self._lock:
            self._index = index
        for path in temps:
            self._salvage(path)
        index = self._index
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

    def _salvage(self, temp: Path) -> None:
        """Spool again the good rows of a file a killed process left half-written."""
        partial = self.directory / "partial"
        partial.mkdir(exist_ok=True)
        name = temp.name.lstrip(".").removesuffix(".tmp")
        seq_text = name.removesuffix(_SUFFIX)
        rows, damage = parse_batch(temp.read_bytes(), self.spec)
        kept = partial / temp.name.lstrip(".")
        temp.rename(kept)
        if rows and seq_text.isdigit() and int(seq_text) not in self._index:
            self.write(Batch(int(seq_text), rows))
        self._report(kept, damage, len(rows))
        log.warning("%s: incomplete spool file: %d rows spooled again", kept, len(rows))

    def _report(self, path: Path, damage: list[Damage], kept: int) -> None:
        if not damage:
            return
        for line_no, offset, reason in damage:
            log.error("%s: line %d (byte %d): %s; skipped", path, line_no, offset, reason)
        metrics.SPOOL_DAMAGED_LINES.labels(table=self.spec.name).inc(len(damage))
        log.error("%s: damaged spool file: %d rows kept", path, kept)

    def write(self, batch: Batch) -> None:
        """Append ``batch`` durably (fsync'd file and directory); raises :class:`StoreError`
        naming the file when the disk refuses (full, read-only): nothing is indexed then."""
        header = {
            "format": _FORMAT,
            "table": self.spec.name,
            "columns": list(self.spec.columns),
            "rows": len(batch.rows),
        }
        parts = [_seal_line(header)]
        # a row as a plain tuple: orjson writes it as an array itself (a NamedTuple goes
        # through the ``default`` callback), the same bytes
        parts.extend(_seal_line(tuple(row)) for row in batch.rows)
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
            temp.unlink(missing_ok=True)
            raise StoreError(f"{final}: cannot spool batch: {exc.strerror}") from exc
        with self._lock:
            self._index[batch.seq] = (len(batch.rows), len(data))

    def read(self, seq: int) -> Batch:
        """The batch ``seq``: every row that verifies. Damage is logged (file, line, byte
        offset), counted and the file copied to ``quarantine/``; it never raises for it.
        Raises :class:`StoreError` when the file cannot be read at all."""
        path = self._path(seq)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"{path}: cannot read spooled batch: {exc.strerror}") from exc
        rows, damage = parse_batch(data, self.spec)
        if damage:
            quarantine = self.directory / "quarantine"
            try:
                quarantine.mkdir(exist_ok=True)
                shutil.copyfile(path, quarantine / path.name)
            except OSError as exc:
                log.error("%s: cannot copy to %s: %s", path, quarantine, exc.strerror)
            self._report(path, damage, len(rows))
        return Batch(seq, rows)

    def remove(self, seq: int) -> None:
        path = self._path(seq)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot remove drained batch: {exc.strerror}") from exc
        with self._lock:
            self._index.pop(seq, None)
