"""Export closed time windows of the production tables as Parquet, with a manifest.

Layout (``prefix`` is ``s3_export.prefix``, ``raw/`` by default)::

    <prefix><table>/date=YYYY-MM-DD/hour=HH/part-00000.parquet
    <prefix><table>/date=YYYY-MM-DD/hour=HH/_manifest.json

(windows shorter than an hour add a ``window=<start µs>/`` level). A window is *closed*
once every live gatherer's cursor has passed its end (``dedup_cursors``; a gatherer more
than ``max_lag`` behind the newest is not waited for), or, when the caller passes ``until``,
once it ends by then (see :meth:`Exporter.survey`). Exporting a window uploads its
parts, then its manifest, then deletes any other object of that window's directory, then
records it in ``dedup_exports``: re-exporting replaces the files (same names, atomic per
object) and never leaves duplicates. Files are deterministic for the same rows.

``orderbook_deltas`` is exported as the merged book stream (see
:mod:`kalshi.dedup.parquet`); ``markets`` (a current-state table) is not exported.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import trio
from attrs import frozen

from kalshi.book import OrderBook
from kalshi.clock import WallClock, system_wall_us
from kalshi.config import S3Config
from kalshi.dedup import metrics
from kalshi.dedup.gatherers import SKEW_US
from kalshi.dedup.merge import point_ts
from kalshi.dedup.parquet import book_stream_rows, encode
from kalshi.dedup.segments import apply_change, apply_row, book_from_snapshot
from kalshi.dedup.targets import Target, open_target
from kalshi.errors import StoreError
from kalshi.models.rows import DeltaRow, Row, SnapshotRow
from kalshi.store import Database, connect_db

__all__ = [
    "ALL_WINDOWS",
    "EXPORT_TABLES",
    "PART_ROWS",
    "Exporter",
    "Held",
    "Survey",
    "WindowExport",
    "window_prefix",
]

log = logging.getLogger("kalshi.dedup.export")

EXPORT_TABLES = {
    "trades": "exchange_ts",
    "orderbook_deltas": "exchange_ts",
    "orderbook_snapshots": "snapshot_ts",
    "tickers": "exchange_ts",
    "market_lifecycle": "exchange_ts",
    "gaps": "start_ts",
}
PART_ROWS = 1_000_000
"""Rows per Parquet file (the book stream of a window is always one file)."""
HOUR_US = 3_600_000_000
ALL_WINDOWS = 2**62
"""``until`` that closes every window with rows, the newest too (the gatherers have stopped)."""

Progress = Callable[["WindowExport"], None]


@frozen
class WindowExport:
    table: str
    start: int  # µs, inclusive
    end: int  # µs, exclusive
    rows: int
    bytes: int
    keys: tuple[str, ...]  # parts, then the manifest


@frozen
class Held:
    """A table whose next window is not closed yet, and why.

    ``start``: its first window not exported (µs); ``closes``: the horizon (µs) at which it
    counts as closed (its end; for ``orderbook_deltas`` under the cursors, its end plus
    :data:`SKEW_US`, as exchange times run out of order along a book); ``horizon``: the
    horizon asked for (``until``) or reached by the cursors, ``None`` when no cursor exists.
    """

    table: str
    start: int
    closes: int
    horizon: int | None
    until: bool  # the horizon is the caller's ``until`` (else the cursors')

    def reason(self) -> str:
        """One line saying why the table is held back (for the command line)."""
        head = f"{self.table} held back from {_iso(self.start)}"
        if self.horizon is None:
            return f"{head}: no merge cursor yet (run kalshi dedup first)"
        if self.until:
            return f"{head}: its window ends at {_iso(self.closes)}, after --until"
        extra = (
            " + 60 s, as exchange times run out of order"
            if self.table == "orderbook_deltas"
            else ""
        )
        return (
            f"{head}: its window closes when every gatherer's cursor passes {_iso(self.closes)}"
            f" (its end{extra}); the cursors are at {_iso(self.horizon)}"
        )


@frozen
class Survey:
    """What :meth:`Exporter.survey` found: ``windows`` to export, oldest first per table,
    and ``held``, the tables with rows whose next window is not closed yet."""

    windows: list[tuple[str, int]]
    held: list[Held]
    cursors: int | None = None  # where the merge cursors are (µs), read when ``until`` is given

    def behind(self, until: int | None) -> str | None:
        """A warning when the caller's ``until`` is past the merge cursors: rows received
        since are not merged yet, so the windows it closes may miss some."""
        if until is None or until == ALL_WINDOWS:
            return None
        if self.cursors is not None and self.cursors >= until:
            return None
        at = "no merge cursor yet" if self.cursors is None else f"at {_iso(self.cursors)}"
        return (
            f"the merge cursors are {at}, before --until {_iso(until)}: rows received since"
            " are not merged yet and will not be in the windows exported now"
            " (kalshi export --force re-exports them)"
        )


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _iso(us: int) -> str:
    return _utc(us).isoformat().replace("+00:00", "Z")


def window_prefix(prefix: str, table: str, start: int, window_us: int) -> str:
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    at = _utc(start)
    base = f"{prefix}{table}/date={at:%Y-%m-%d}/hour={at:%H}/"
    return base + (f"window={start}/" if window_us < HOUR_US else "")


class _Reader:
    """Production reads for the export (blocking; one worker thread at a time)."""

    def __init__(self, url: str, wall_us: WallClock = system_wall_us) -> None:
        self.url = url
        self._wall_us = wall_us
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = connect_db(self.url)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def horizon(self, max_lag_us: int) -> int | None:
        row = self.db.query(
            "SELECT min(horizon) FROM dedup_cursors"
            " WHERE horizon >= (SELECT max(horizon) FROM dedup_cursors) - %s",
            (max_lag_us,),
        )
        return None if not row or row[0][0] is None else int(row[0][0])

    def exported_until(self, table: str) -> int | None:
        row = self.db.query(
            "SELECT max(window_end) FROM dedup_exports WHERE table_name = %s", (table,)
        )
        return None if row[0][0] is None else int(row[0][0])

    def next_time(self, table: str, column: str, at: int) -> int | None:
        row = self.db.query(f"SELECT min({column}) FROM {table} WHERE {column} >= %s", (at,))
        return None if row[0][0] is None else int(row[0][0])

    def rows(self, table: str, column: str, start: int, end: int) -> list[Row]:
        return self.db.fetch_rows(table, f"{column} >= %s AND {column} < %s", (start, end))

    def gaps(self, start: int, end: int) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT start_ts, end_ts, gatherer_id, ticker, kind, detail FROM gaps"
            " WHERE start_ts < %s AND (end_ts IS NULL OR end_ts >= %s) ORDER BY start_ts",
            (end, start),
        )
        names = ("start_ts", "end_ts", "gatherer_id", "ticker", "kind", "detail")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def book_before(self, ticker: str, seq: int) -> tuple[int, OrderBook]:
        """The merged book of ``ticker`` just before stream position ``seq``."""
        book = OrderBook(ticker)
        found = self.db.query(
            "SELECT seq, yes_bids::text, no_bids::text FROM orderbook_snapshots"
            " WHERE ticker = %s AND source = 'ws' AND seq < %s ORDER BY seq DESC LIMIT 1",
            (ticker, seq),
        )
        since = 0
        if found:
            since = int(found[0][0])
            book.yes = {int(p): int(s) for p, s in orjson.loads(found[0][1])}
            book.no = {int(p): int(s) for p, s in orjson.loads(found[0][2])}
        for side, price, change in self.db.query(
            "SELECT side, price, size_delta FROM orderbook_deltas"
            " WHERE ticker = %s AND seq > %s AND seq < %s ORDER BY seq",
            (ticker, since, seq),
        ):
            apply_change(book, side, price, change)
        return seq - 1, book

    def record(self, export: WindowExport, manifest: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO dedup_exports (table_name, window_start, window_end, rows, bytes,"
            " manifest, exported_at) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)"
            " ON CONFLICT (table_name, window_start) DO UPDATE SET window_end ="
            " EXCLUDED.window_end, rows = EXCLUDED.rows, bytes = EXCLUDED.bytes,"
            " manifest = EXCLUDED.manifest, exported_at = EXCLUDED.exported_at",
            (
                export.table,
                export.start,
                export.end,
                export.rows,
                export.bytes,
                json.dumps(manifest),
                self._wall_us(),
            ),
        )


class Exporter:
    """Exports windows of the production database at ``url`` to ``target``."""

    def __init__(
        self,
        url: str,
        s3: S3Config,
        target: Target | None = None,
        *,
        max_lag: float = 30.0,
        tables: Sequence[str] = tuple(EXPORT_TABLES),
        wall_us: WallClock = system_wall_us,
    ) -> None:
        self.s3 = s3
        self.target = target if target is not None else open_target(s3)
        self.window_us = max(1, int(s3.window * 1_000_000))
        self.max_lag_us = int(max_lag * 1_000_000)
        self.tables = tuple(tables)
        self._reader = _Reader(url, wall_us)
        # End-of-window books of the last exported deltas window: ticker -> (seq, book).
        self._books: dict[str, tuple[int, OrderBook]] = {}

    def close(self) -> None:
        self._reader.close()

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except StoreError:
            self._reader.close()  # reconnect on the next call
            raise

    def _align(self, us: int) -> int:
        return us - us % self.window_us

    async def plan(self, *, until: int | None = None, force: bool = False) -> list[tuple[str, int]]:
        """``(table, window start)`` of every closed window with rows not yet exported
        (all of them with ``force``), oldest first per table (see :meth:`survey`)."""
        return (await self.survey(until=until, force=force)).windows

    async def survey(self, *, until: int | None = None, force: bool = False) -> Survey:
        """The closed windows with rows not yet exported (all of them with ``force``), and
        the tables held back.

        Without ``until``, a window is closed once the cursors' horizon has passed its end
        (``orderbook_deltas``: its end plus :data:`SKEW_US`). ``until`` (µs) is the caller
        saying every row stamped before it is merged: every table's windows ending by it are
        closed, the same rule for all (a book-stream window's rows stamped after its end
        precede, in their market's stream, rows stamped before it, so they are merged too).
        :data:`ALL_WINDOWS` closes every window.
        """
        cursors = await self._read(self._reader.horizon, self.max_lag_us)
        horizon = until if until is not None else cursors
        out: list[tuple[str, int]] = []
        held: list[Held] = []
        for table in self.tables:
            column = EXPORT_TABLES[table]
            done = None if force else await self._read(self._reader.exported_until, table)
            at = done if done is not None else 0
            while True:
                found = await self._read(self._reader.next_time, table, column, at)
                if found is None:
                    break
                start = self._align(found)
                margin = SKEW_US if table == "orderbook_deltas" and until is None else 0
                closes = start + self.window_us + margin
                if horizon is None or closes > horizon:
                    held.append(Held(table, start, closes, horizon, until is not None))
                    break
                out.append((table, start))
                at = start + self.window_us
        return Survey(out, held, cursors)

    async def export(
        self, windows: Sequence[tuple[str, int]], progress: Progress | None = None
    ) -> list[WindowExport]:
        """Export ``windows`` in order; raises :class:`ExportError` when the target fails
        (after retries) -- windows already done stay done."""
        done = []
        for table, start in windows:
            result = await self.export_window(table, start)
            done.append(result)
            if progress is not None:
                progress(result)
        return done

    async def export_closed(
        self, *, until: int | None = None, force: bool = False, progress: Progress | None = None
    ) -> list[WindowExport]:
        return await self.export(await self.plan(until=until, force=force), progress)

    async def stream_rows(self, start: int, end: int) -> list[DeltaRow | SnapshotRow]:
        """The merged book-stream rows of the window, by (ticker, seq).

        Exchange times are not monotonic along a market's stream, so a window holds, per
        market, the stream positions after the last one stamped before ``start`` up to the
        last one stamped before ``end``: contiguous, and every row in exactly one window.
        (Times run backwards by less than :data:`SKEW_US`, so only rows stamped within it
        of the window can cross its edges.)
        """
        near: list[DeltaRow | SnapshotRow] = [
            *await self._read(
                self._reader.rows, "orderbook_deltas", "exchange_ts", start - SKEW_US, end + SKEW_US
            ),
            *(
                s
                for s in await self._read(
                    self._reader.rows,
                    "orderbook_snapshots",
                    "snapshot_ts",
                    start - SKEW_US,
                    end + SKEW_US,
                )
                if s.source == "ws"
            ),
        ]
        before: dict[str, int] = {}
        until: dict[str, int] = {}
        for row in near:
            assert row.seq is not None
            at = row.exchange_ts if isinstance(row, DeltaRow) else point_ts(row)
            if at < start:
                before[row.ticker] = max(before.get(row.ticker, 0), row.seq)
            if at < end:
                until[row.ticker] = max(until.get(row.ticker, 0), row.seq)
        return sorted(
            (r for r in near if before.get(r.ticker, 0) < (r.seq or 0) <= until.get(r.ticker, 0)),
            key=lambda r: (r.ticker, r.seq or 0),
        )

    async def _stream(self, start: int, end: int) -> list[Any]:
        stream = await self.stream_rows(start, end)
        books: dict[str, OrderBook] = {}
        for row in stream:
            if row.ticker in books or isinstance(row, SnapshotRow):
                continue
            cached = self._books.get(row.ticker)
            if cached is None or cached[0] != row.seq - 1:
                cached = await self._read(self._reader.book_before, row.ticker, row.seq)
            books[row.ticker] = cached[1].copy()
        rows = book_stream_rows(start, books, stream, book_from_snapshot)
        # Remember where each market ends, for the next window.
        ends: dict[str, OrderBook] = {}
        for row in stream:
            if isinstance(row, SnapshotRow):
                ends[row.ticker] = book_from_snapshot(row)
            else:
                if row.ticker not in ends:
                    ends[row.ticker] = books[row.ticker].copy()
                apply_row(ends[row.ticker], row)
            assert row.seq is not None
            self._books[row.ticker] = (row.seq, ends[row.ticker])
        return rows

    async def export_window(self, table: str, start: int) -> WindowExport:
        """Export one window of ``table`` (replacing an earlier export of it)."""
        end = start + self.window_us
        column = EXPORT_TABLES[table]
        if table == "orderbook_deltas":
            chunks = [await self._stream(start, end)]
        else:
            rows = await self._read(self._reader.rows, table, column, start, end)
            chunks = [rows[i : i + PART_ROWS] for i in range(0, len(rows), PART_ROWS)] or [[]]
        base = window_prefix(self.s3.prefix, table, start, self.window_us)
        files: list[dict[str, Any]] = []
        for index, chunk in enumerate(chunks):
            data = await trio.to_thread.run_sync(encode, table, chunk)
            key = f"{base}part-{index:05d}.parquet"
            await self.target.put(key, data)
            metrics.EXPORT_BYTES.labels(table).inc(len(data))
            files.append(
                {
                    "key": key,
                    "rows": len(chunk),
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        times = [
            r[3] if table == "orderbook_deltas" else getattr(r, column) for c in chunks for r in c
        ]
        manifest = {
            "table": table,
            "format": "parquet+zstd",
            "window": {"start_us": start, "end_us": end, "start": _iso(start), "end": _iso(end)},
            "rows": sum(f["rows"] for f in files),
            "time_range": {"min_us": min(times, default=None), "max_us": max(times, default=None)},
            "files": files,
            "gaps": await self._read(self._reader.gaps, start, end),
        }
        manifest_key = f"{base}_manifest.json"
        await self.target.put(manifest_key, json.dumps(manifest, indent=2).encode())
        keep = {f["key"] for f in files} | {manifest_key}
        stale = [k for k in await self.target.keys(base) if k not in keep]
        if stale:
            await self.target.delete(stale)
        export = WindowExport(
            table,
            start,
            end,
            sum(int(f["rows"]) for f in files),
            sum(int(f["bytes"]) for f in files),
            (*(str(f["key"]) for f in files), manifest_key),
        )
        await self._read(self._reader.record, export, manifest)
        metrics.EXPORT_WINDOWS.labels(table).inc()
        log.info("exported %s %s: %d rows", table, _iso(start), export.rows)
        return export
