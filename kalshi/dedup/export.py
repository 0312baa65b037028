"""Export closed time windows of the production tables as Parquet, with a manifest.

Layout (``prefix`` is ``s3_export.prefix``, ``raw/`` by default)::

    <prefix><table>/date=YYYY-MM-DD/hour=HH/part-00000.parquet
    <prefix><table>/date=YYYY-MM-DD/hour=HH/_manifest.json

(windows shorter than an hour add a ``window=<start µs>/`` level). A window is *closed*
once every live gatherer has merged past its end by what it committed, never by comparing
clocks: each cursor in ``dedup_cursors`` is a receipt in its gatherer's own clock, and its
``reached`` is that receipt as exchange time, less the gatherer's offset measured on its own
rows (:meth:`kalshi.dedup.service.Deduplicator._reached`). Exchange-time windows close by
the smallest ``reached``, ``orderbook_snapshots`` (placed by ``snapshot_ts``, a receipt) by
the smallest cursor, over the gatherers no more than ``max_lag`` of exchange time behind the
newest (one further behind is not waited for). When the caller passes ``until``, a window
is closed once it ends by then (see :meth:`Exporter.survey`); it is recorded *partial* when
the cursors had not closed it.

Exporting a window uploads its parts, then its manifest, then deletes any other object of
that window's directory, then records it in ``dedup_exports`` with a digest of what it held:
re-exporting replaces the files (same names, atomic per object) and never leaves
duplicates. Files are deterministic for the same rows.

Rows that reach production after their window was exported (a gatherer back after an
outage or far behind, late frames, a window closed early by ``until``) are exported by
rewriting the window: the deduplicator records in ``dedup_touched``, in the transaction of
the rows, the oldest export time of rows it inserted per table; each :meth:`Exporter.survey`
turns that, in one transaction, into ``stale`` marks on the exported windows at or after it
(and placeholders for windows with rows never exported behind the newest exported), then
compares each stale window's digest with production's and rewrites the ones that changed.
A reader of the window's directory sees each row once: a window is normally one part,
replaced by one atomic PUT, and the manifest lists the parts with their sha256.

Every window is read a step of :data:`READ_ROWS` rows at a time through server-side
cursors, each step written as a row group, so the export holds one step's rows, not the
window. ``orderbook_deltas`` is exported as the merged book stream (see
:mod:`kalshi.dedup.parquet`), read by (ticker, seq), one part a window. ``markets`` (a
current-state table, one row per ticker) is exported whole by
:meth:`Exporter.export_markets` to ``<prefix>markets/part-NNNNN.parquet`` and its
``_manifest.json``, replaced when it changed.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import json
import logging
import operator
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import trio
from attrs import define, field, frozen

from kalshi.book import OrderBook
from kalshi.clock import WallClock, system_wall_us
from kalshi.config import S3Config
from kalshi.dedup import metrics
from kalshi.dedup.books import book_before
from kalshi.dedup.gatherers import SKEW_US
from kalshi.dedup.parquet import PartWriter, StreamRow, book_stream_rows, market_rows, schema
from kalshi.dedup.segments import apply_row, book_from_snapshot
from kalshi.dedup.tables import EXPORT_TABLES
from kalshi.dedup.targets import ExportHealth, LocalTarget, Target, open_target
from kalshi.errors import StoreError
from kalshi.models.rows import DeltaRow, Row, SnapshotRow
from kalshi.store import Database, connect_db

__all__ = [
    "ALL_WINDOWS",
    "EXPORT_TABLES",
    "PART_ROWS",
    "Exporter",
    "Held",
    "Horizons",
    "Survey",
    "WindowExport",
    "live_horizons",
    "stream_digest",
    "window_prefix",
]

log = logging.getLogger("kalshi.dedup.export")

PART_ROWS = 1_000_000
"""Rows per Parquet file (the book stream of a window is always one file)."""
READ_ROWS = 20_000
"""Rows read (and held as Python objects) per step of a window of
:meth:`Exporter.export_window`: one row group of its part each (the book stream's: a
step of its deltas and snapshots, as the file's rows)."""
MARKETS_READ_ROWS = 5_000
"""``markets`` rows per step of :meth:`Exporter.export_markets` (a row group each): a
market carries ~1.3 KB of payload, parsed for its columns, so a step costs ~12 KB a row at
peak (250 000 markets: +68 MiB of peak RSS in steps of 2 000, +248 MiB in steps of 20 000,
+1 548 MiB read whole, which took the deduplicator's peak from ~800 MiB to ~2.5 GiB;
docs/dedup.md)."""
HOUR_US = 3_600_000_000
ALL_WINDOWS = 2**62
"""``until`` that closes every window with rows, the newest too (the gatherers have stopped)."""

Progress = Callable[["WindowExport"], None]
_POSITION = ("ticker", "seq")
"""The book stream's order: a market's stream position."""
_position = operator.attrgetter(*_POSITION)


@frozen
class WindowExport:
    table: str
    start: int  # µs, inclusive
    end: int  # µs, exclusive
    rows: int
    bytes: int
    keys: tuple[str, ...]  # parts, then the manifest
    partial: bool = False  # exported before the cursors closed it (``until``)
    rewrite: bool = False  # written again: rows reached production after its export


@frozen
class Horizons:
    """Where the live gatherers' merge has reached (µs): ``exchange``, the smallest
    cursor as exchange time (``dedup_cursors.reached``); ``receipt``, the smallest cursor
    itself (``received_to``, each in its gatherer's own clock: what ``snapshot_ts`` windows
    close by)."""

    exchange: int
    receipt: int

    def of(self, table: str) -> int:
        return self.receipt if EXPORT_TABLES[table] == "snapshot_ts" else self.exchange


def live_horizons(
    cursors: Sequence[tuple[str, int | None, int]], max_lag_us: int
) -> Horizons | None:
    """Pure: :class:`Horizons` of ``cursors``, ``(gatherer_id, reached, received_to)`` per
    cursor row. A gatherer counts with its smallest ``reached`` and ``received_to``; one with a
    cursor not yet given a ``reached`` (written before migration 008) is left out, as is one
    more than ``max_lag_us`` of exchange time behind the newest. ``None``: no gatherer."""
    reached: dict[str, int | None] = {}
    receipt: dict[str, int] = {}
    for gid, at, horizon in cursors:
        before = reached.get(gid, at)
        reached[gid] = None if before is None or at is None else min(before, at)
        receipt[gid] = min(receipt.get(gid, horizon), horizon)
    known = {g: r for g, r in reached.items() if r is not None}
    if not known:
        return None
    lead = max(known.values())
    live = [g for g, r in known.items() if r >= lead - max_lag_us]
    return Horizons(min(known[g] for g in live), min(receipt[g] for g in live))


@frozen
class Held:
    """A table whose next window is not closed yet, and why.

    ``start``: its first window not exported (µs); ``closes``: the horizon (µs) at which it
    counts as closed (its end; for ``orderbook_deltas`` under the cursors, its end plus
    :data:`SKEW_US`, as exchange times run out of order along a book); ``horizon``: the
    horizon asked for (``until``) or reached by the live gatherers (:class:`Horizons`),
    ``None`` when no cursor exists.
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
        how = (
            "by snapshot time (a receipt, in each gatherer's own clock)"
            if EXPORT_TABLES[self.table] == "snapshot_ts"
            else "by exchange time (each cursor less its gatherer's measured offset)"
        )
        return (
            f"{head}: its window closes when every live gatherer has merged past"
            f" {_iso(self.closes)} (its end{extra}); they have reached {_iso(self.horizon)}"
            f" {how}"
        )


@frozen
class Survey:
    """What :meth:`Exporter.survey` found: ``windows`` to export, oldest first per table,
    and ``held``, the tables with rows whose next window is not closed yet."""

    windows: list[tuple[str, int]]
    held: list[Held]
    cursors: int | None = None  # exchange time the live gatherers' merge has reached (µs)
    rewrites: list[tuple[str, int]] = field(factory=list)  # of ``windows``: ones that gained rows

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
            " (those windows are rewritten once the rows are merged)"
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

    def __init__(self, url: str, target: str, wall_us: WallClock = system_wall_us) -> None:
        self.url = url
        self.target = target  # dedup_exports.target: what is recorded is this target's
        self._wall_us = wall_us
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = connect_db(self.url)
        return self._db

    def claim(self) -> None:
        """Windows recorded before migration 010 (target '') become this target's: an S3
        target's (the exports before were to the configured bucket)."""
        self.db.execute(
            "UPDATE dedup_exports SET target = %s WHERE target = ''"
            " AND NOT EXISTS (SELECT 1 FROM dedup_exports WHERE target = %s)",
            (self.target, self.target),
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def horizons(self, max_lag_us: int) -> Horizons | None:
        rows = self.db.query(
            "SELECT gatherer_id, reached, coalesce(received_to, horizon) FROM dedup_cursors"
        )
        return live_horizons([(g, r, int(h)) for g, r, h in rows], max_lag_us)

    def mark_stale(self, tables: Sequence[str], window_us: int) -> int:
        """Turn ``dedup_touched`` into ``stale`` marks, in one transaction: for each of
        ``tables`` touched before its newest exported window's end, every window with rows
        from the touched time up to that end is marked stale (a placeholder row when it was
        never exported: rows came to a window the export had passed). Deletes the touched
        rows it read (the deduplicator writes them in its own transactions, which wait on
        this one's row locks). Returns the windows marked."""
        marked = 0
        with self.db.transaction():
            touched = self.db.query(
                "SELECT table_name, since FROM dedup_touched WHERE table_name = ANY(%s)"
                " ORDER BY table_name FOR UPDATE",
                (list(tables),),
            )
            for table, since in touched:
                # every target that exported the table (an S3 bucket, a directory)
                for (target,) in self.db.query(
                    "SELECT DISTINCT target FROM dedup_exports WHERE table_name = %s ORDER BY 1",
                    (table,),
                ):
                    done = self.exported_until(table, target)
                    if done is None or since >= done:
                        continue  # rows in windows not exported yet: exported when they close
                    column = EXPORT_TABLES[table]
                    first = int(since) - int(since) % window_us
                    marked += self.db.execute(
                        "INSERT INTO dedup_exports (target, table_name, window_start,"
                        " window_end, rows, bytes, manifest, exported_at, stale)"
                        " SELECT %s, %s, w, w + %s, 0, 0, '{}'::jsonb, 0, true FROM"
                        f" (SELECT DISTINCT {column} - {column} %% %s AS w FROM {table}"
                        f" WHERE {column} >= %s AND {column} < %s) AS d"
                        " ON CONFLICT (target, table_name, window_start) DO UPDATE"
                        " SET stale = true",
                        (target, table, window_us, window_us, first, done),
                    )
            if touched:
                self.db.execute(
                    "DELETE FROM dedup_touched WHERE table_name = ANY(%s)",
                    ([t for t, _ in touched],),
                )
        return marked

    def stale(self, table: str) -> list[tuple[int, str | None]]:
        """``(window start, digest)`` of the windows of ``table`` marked stale, oldest first."""
        rows = self.db.query(
            "SELECT window_start, digest FROM dedup_exports WHERE target = %s"
            " AND table_name = %s AND stale ORDER BY window_start",
            (self.target, table),
        )
        return [(int(start), digest) for start, digest in rows]

    def unchanged(self, table: str, start: int) -> None:
        """A stale window whose rows are those exported: no longer stale."""
        self.db.execute(
            "UPDATE dedup_exports SET stale = false WHERE target = %s AND table_name = %s"
            " AND window_start = %s",
            (self.target, table, start),
        )

    def count(self, table: str, column: str, start: int, end: int) -> int:
        row = self.db.query(
            f"SELECT count(*) FROM {table} WHERE {column} >= %s AND {column} < %s", (start, end)
        )
        return int(row[0][0])

    def exported_until(self, table: str, target: str | None = None) -> int | None:
        """The end of the newest window of ``table`` exported to ``target`` (this
        reader's by default)."""
        row = self.db.query(
            "SELECT max(window_end) FROM dedup_exports WHERE target = %s AND table_name = %s",
            (self.target if target is None else target, table),
        )
        return None if row[0][0] is None else int(row[0][0])

    def next_time(self, table: str, column: str, at: int) -> int | None:
        row = self.db.query(f"SELECT min({column}) FROM {table} WHERE {column} >= %s", (at,))
        return None if row[0][0] is None else int(row[0][0])

    def rows(self, table: str, column: str, start: int, end: int) -> list[Row]:
        return self.db.fetch_rows(table, f"{column} >= %s AND {column} < %s", (start, end))

    def row_steps(
        self, table: str, column: str, start: int, end: int
    ) -> Generator[list[Row], None, None]:
        """The window's rows by key, :data:`READ_ROWS` at a time (a server-side cursor)."""
        where = f"{column} >= %s AND {column} < %s"
        return self.db.fetch_row_steps(table, where, (start, end), READ_ROWS)

    def markets_mark(self) -> tuple[int, int]:
        found = self.db.query("SELECT count(*), coalesce(max(updated_at), 0) FROM markets")
        return int(found[0][0]), int(found[0][1])

    def markets(self, after: str, limit: int) -> list[Row]:
        """Up to ``limit`` ``markets`` rows with ticker after ``after`` (``""``: from the
        first), by ticker."""
        return self.db.fetch_rows("markets", "ticker > %s", (after,), limit=limit)

    def stream_spans(self, start: int, end: int) -> dict[str, tuple[int, int]]:
        """The book stream's window ``[start, end)`` (µs) per market: ``ticker -> (low,
        high)``, the window holding the stream positions ``low < seq <= high``. ``high``: the
        market's last delta stamped before ``end``; ``low``: its last delta stamped before
        ``start``, or, with none stamped within :data:`SKEW_US` before it, its last delta
        before the first of the window (0: none). Only the deltas stamped within
        :data:`SKEW_US` of the window are read, and only these per-market figures come back
        (see :meth:`Exporter.stream_steps`)."""
        rows = self.db.query(
            "WITH near AS (SELECT ticker, seq, exchange_ts FROM orderbook_deltas"
            " WHERE exchange_ts >= %s AND exchange_ts < %s),"
            " span AS (SELECT ticker, max(seq) FILTER (WHERE exchange_ts < %s) AS lo,"
            " max(seq) FILTER (WHERE exchange_ts < %s) AS hi FROM near GROUP BY ticker),"
            " head AS (SELECT n.ticker, min(n.seq) AS seq FROM near n JOIN span s USING (ticker)"
            " WHERE s.lo IS NULL AND n.seq <= s.hi GROUP BY n.ticker)"
            " SELECT s.ticker, coalesce(s.lo, (SELECT max(d.seq) FROM orderbook_deltas d"
            " WHERE d.ticker = s.ticker AND d.seq < h.seq), 0), s.hi"
            " FROM span s LEFT JOIN head h USING (ticker) WHERE s.hi IS NOT NULL",
            (start - SKEW_US, end + SKEW_US, start, end),
        )
        return {str(t): (int(low), int(high)) for t, low, high in rows}

    def stream_steps(
        self, spans: dict[str, tuple[int, int]], start: int, end: int
    ) -> Generator[list[DeltaRow | SnapshotRow], None, None]:
        """The book stream of the window ``[start, end)`` whose ``spans`` are
        :meth:`stream_spans`': the deltas stamped within :data:`SKEW_US` of it and the
        WebSocket snapshots with ``low < seq <= high`` of their market's span, by (ticker,
        seq) (a delta before a snapshot at one position), :data:`READ_ROWS` rows a step,
        through two server-side cursors (:meth:`Database.fetch_row_steps`) merged as they
        are read. Closing the iterator closes them."""
        if not spans:
            return
        tickers = list(spans)
        within = (
            tickers,
            [spans[t][0] for t in tickers],
            [spans[t][1] for t in tickers],
        )
        inside = (
            "EXISTS (SELECT 1 FROM unnest(%s::text[], %s::bigint[], %s::bigint[])"
            " AS w(t, lo, hi) WHERE w.t = ticker AND seq > w.lo AND seq <= w.hi)"
        )
        deltas = self.db.fetch_row_steps(
            "orderbook_deltas",
            f"exchange_ts >= %s AND exchange_ts < %s AND {inside}",
            (start - SKEW_US, end + SKEW_US, *within),
            READ_ROWS,
            order=_POSITION,
        )
        snapshots = self.db.fetch_row_steps(
            "orderbook_snapshots",
            f"source = 'ws' AND ticker = ANY(%s) AND {inside}",
            (tickers, *within),
            READ_ROWS,
            order=_POSITION,
        )
        try:
            stream = heapq.merge(
                itertools.chain.from_iterable(deltas),
                itertools.chain.from_iterable(snapshots),
                key=_position,
            )
            while step := list(itertools.islice(stream, READ_ROWS)):
                yield step  # type: ignore[misc]  # the two tables' rows
        finally:
            deltas.close()
            snapshots.close()

    def gaps(self, start: int, end: int) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT start_ts, end_ts, gatherer_id, ticker, kind, detail FROM gaps"
            " WHERE start_ts < %s AND (end_ts IS NULL OR end_ts >= %s) ORDER BY start_ts",
            (end, start),
        )
        names = ("start_ts", "end_ts", "gatherer_id", "ticker", "kind", "detail")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def book_before(self, ticker: str, seq: int) -> tuple[int, OrderBook]:
        """The merged book of ``ticker`` just before stream position ``seq``
        (:func:`kalshi.dedup.books.book_before`)."""
        return seq - 1, book_before(self.db, ticker, seq).book

    def was_stale(self, table: str, start: int) -> bool:
        row = self.db.query(
            "SELECT stale FROM dedup_exports WHERE target = %s AND table_name = %s"
            " AND window_start = %s",
            (self.target, table, start),
        )
        return bool(row and row[0][0])

    def record(self, export: WindowExport, manifest: dict[str, Any], digest: str) -> None:
        """Record ``export`` (no longer stale; ``rewrites`` counts its rewrites)."""
        self.db.execute(
            "INSERT INTO dedup_exports (target, table_name, window_start, window_end, rows,"
            " bytes, manifest, exported_at, digest, partial, stale)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, false)"
            " ON CONFLICT (target, table_name, window_start) DO UPDATE SET window_end ="
            " EXCLUDED.window_end, rows = EXCLUDED.rows, bytes = EXCLUDED.bytes,"
            " manifest = EXCLUDED.manifest, exported_at = EXCLUDED.exported_at,"
            " digest = EXCLUDED.digest, partial = EXCLUDED.partial, stale = false,"
            " rewrites = dedup_exports.rewrites + %s",
            (
                self.target,
                export.table,
                export.start,
                export.end,
                export.rows,
                export.bytes,
                json.dumps(manifest),
                self._wall_us(),
                digest,
                export.partial,
                int(export.rewrite),
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
        # what was exported is recorded per target: "s3://bucket/prefix" or "/dir/prefix"
        self._reader = _Reader(url, self.target.describe(s3.prefix), wall_us)
        self._claimed = isinstance(self.target, LocalTarget)  # never claims S3's windows
        # End-of-window books of the last exported deltas window: ticker -> (seq, book).
        self._books: dict[str, tuple[int, OrderBook]] = {}
        self._markets_mark: tuple[int, int] | None = None  # (rows, newest updated_at) put
        self._markets_at: int | None = None  # wall time (µs) of the last markets export
        self._wall_us = wall_us

    def close(self) -> None:
        self._reader.close()

    @property
    def health(self) -> ExportHealth:
        """Whether the export works (its target's; :class:`ExportHealth`)."""
        return self.target.health

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

    def _closes(self, table: str, start: int, until: int | None = None) -> int:
        """The horizon at which ``table``'s window at ``start`` is closed: its end, plus
        :data:`SKEW_US` for the book stream under the cursors."""
        margin = SKEW_US if table == "orderbook_deltas" and until is None else 0
        return start + self.window_us + margin

    async def survey(self, *, until: int | None = None, force: bool = False) -> Survey:
        """The windows to export, and the tables held back: the exported windows that
        gained rows since (``rewrites``, first), then the closed windows with rows not yet
        exported (all of them with ``force``).

        Without ``until``, a window is closed once the live gatherers' merge has reached
        its end (:class:`Horizons`; ``orderbook_deltas``: its end plus :data:`SKEW_US`).
        ``until`` (µs) is the caller saying every row stamped before it is merged: every
        table's windows ending by it are closed, the same rule for all (a book-stream
        window's rows stamped after its end precede, in their market's stream, rows stamped
        before it, so they are merged too). :data:`ALL_WINDOWS` closes every window. Rows
        that reach a window after its export (however it was closed) make it a rewrite at
        a later survey (see the module's documentation).
        """
        if not self._claimed:
            await self._read(self._reader.claim)
            self._claimed = True
        await self._read(self._reader.mark_stale, self.tables, self.window_us)
        horizons = await self._read(self._reader.horizons, self.max_lag_us)
        cursors = None if horizons is None else horizons.exchange
        out: list[tuple[str, int]] = []
        rewrites: list[tuple[str, int]] = []
        held: list[Held] = []
        for table in self.tables:
            column = EXPORT_TABLES[table]
            if not force:
                for start, digest in await self._read(self._reader.stale, table):
                    if await self._digest(table, start) == digest:
                        await self._read(self._reader.unchanged, table, start)
                    else:
                        rewrites.append((table, start))
                        out.append((table, start))
            horizon = until if until is not None or horizons is None else horizons.of(table)
            done = None if force else await self._read(self._reader.exported_until, table)
            at = done if done is not None else 0
            while True:
                found = await self._read(self._reader.next_time, table, column, at)
                if found is None:
                    break
                start = self._align(found)
                closes = self._closes(table, start, until)
                if horizon is None or closes > horizon:
                    held.append(Held(table, start, closes, horizon, until is not None))
                    break
                out.append((table, start))
                at = start + self.window_us
        return Survey(out, held, cursors, rewrites)

    async def _digest(self, table: str, start: int) -> str:
        """What the window holds in production now (compared with what its export held):
        ``rows:<count>`` (rows are only ever added to a keyed table); for the book stream a
        hash of its per-market seq ranges (:func:`stream_digest`)."""
        end = start + self.window_us
        if table == "orderbook_deltas":
            runs = _Runs()
            stream = await self.stream_steps(start, end)
            try:
                while (step := await self._read(next, stream, None)) is not None:
                    runs.add(step)
            finally:
                stream.close()  # the server-side cursors
            return runs.digest()
        count = await self._read(self._reader.count, table, EXPORT_TABLES[table], start, end)
        return f"rows:{count}"

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

    async def _publish(
        self, base: str, files: list[dict[str, Any]], manifest: dict[str, Any]
    ) -> str:
        """Put ``manifest`` as ``<base>_manifest.json`` after its ``files``, then delete every
        other object under ``base`` (an earlier export's leftovers); returns its key."""
        manifest_key = f"{base}_manifest.json"
        await self.target.put(manifest_key, json.dumps(manifest, indent=2).encode())
        keep = {f["key"] for f in files} | {manifest_key}
        stale = [k for k in await self.target.keys(base) if k not in keep]
        if stale:
            await self.target.delete(stale)
        return manifest_key

    async def export_markets(self, *, force: bool = False) -> int | None:
        """Write the whole ``markets`` table (by ticker) to ``<prefix>markets/``: parts of
        up to :data:`PART_ROWS` rows, then ``_manifest.json``, then the removal of any
        other object there. Skipped (``None``) unless ``force`` when the table has the same
        row count and newest ``updated_at`` as at this exporter's last export, or when that
        export is less than one window (``s3_export.window``) old: listed markets change
        with every REST poll (prices, volume), and the whole table is rewritten each time.
        Else the rows written. The table is read :data:`MARKETS_READ_ROWS` rows at a time
        (by ticker), each step written as a row group, so the rows held are bounded by
        that, not by the table. Raises :class:`ExportError` when the target fails."""
        mark = await self._read(self._reader.markets_mark)
        now = self._wall_us()
        base = f"{self.s3.prefix}markets/"
        if self._markets_mark is None and not force:  # a new exporter (--once): the target's
            self._markets_mark = await self._published_markets_mark(base)
        if not force and (
            mark == self._markets_mark
            or (self._markets_at is not None and now - self._markets_at < self.window_us)
        ):
            return None
        files: list[dict[str, Any]] = []
        rows, after, done = 0, "", False
        while not done:
            part = PartWriter("markets")
            while part.rows < PART_ROWS:
                limit = min(MARKETS_READ_ROWS, PART_ROWS - part.rows)
                page = await self._read(self._reader.markets, after, limit)
                if page:
                    after = page[-1].ticker
                    await trio.to_thread.run_sync(_write_markets, part, page)
                if len(page) < limit:
                    done = True
                    break
            data = await trio.to_thread.run_sync(part.finish)
            if part.rows == 0 and files:
                break  # the last part ended the table exactly
            key = f"{base}part-{len(files):05d}.parquet"
            await self.target.put(key, data)
            metrics.EXPORT_BYTES.labels("markets").inc(len(data))
            digest = hashlib.sha256(data).hexdigest()
            files.append({"key": key, "rows": part.rows, "bytes": len(data), "sha256": digest})
            rows += part.rows
        manifest = {
            "table": "markets",
            "format": "parquet+zstd",
            "rows": rows,
            "updated_until_us": mark[1],
            "files": files,
        }
        await self._publish(base, files, manifest)
        self._markets_mark, self._markets_at = mark, now
        log.info("exported markets: %d rows", rows)
        return rows

    async def _published_markets_mark(self, base: str) -> tuple[int, int] | None:
        """(rows, newest ``updated_at``) of the ``markets`` export published under ``base``
        (its manifest), or ``None`` when there is none or it does not say."""
        data = await self.target.get(f"{base}_manifest.json")
        if data is None:
            return None
        try:
            manifest = json.loads(data)
            return (int(manifest["rows"]), int(manifest["updated_until_us"]))
        except (ValueError, TypeError, KeyError):  # none, or not one of ours
            return None

    async def stream_steps(
        self, start: int, end: int
    ) -> Generator[list[DeltaRow | SnapshotRow], None, None]:
        """The merged book-stream rows of the window, by (ticker, seq), :data:`READ_ROWS`
        rows a step (:meth:`_Reader.stream_steps`; run each ``next`` in a worker thread, and
        close it).

        Exchange times are not monotonic along a market's stream, so a window holds, per
        market, the stream positions after the last delta stamped before ``start`` up to the
        last delta stamped before ``end``: contiguous, and every row in exactly one window.
        (Times run backwards by less than :data:`SKEW_US`, so only deltas stamped within it
        of the window can cross its edges.) A WebSocket snapshot goes with the deltas around
        it, by its position (``seq``), never by its time: its only time is a receipt, in
        the clock of the gatherer that took it, which may be minutes off (issue 18).
        """
        spans = await self._read(self._reader.stream_spans, start, end)
        return self._reader.stream_steps(spans, start, end)

    async def _stream_rows(
        self, start: int, window: _Window, step: list[DeltaRow | SnapshotRow]
    ) -> list[StreamRow]:
        """One step of the window's book stream as the file's rows (:func:`book_stream_rows`:
        a market whose first row in the window is a delta starts from its book before it,
        the end of the last window exported when that was its previous position, else read
        from production); remembers where each market ends (for the next window) and adds
        the step to the window's digest."""
        books: dict[str, OrderBook] = {}  # the book at the window start, of a delta-first market
        for row in step:
            book = window.ends.get(row.ticker)
            if isinstance(row, SnapshotRow):
                book = book_from_snapshot(row)
            else:
                if book is None:
                    cached = self._books.get(row.ticker)
                    if cached is None or cached[0] != row.seq - 1:
                        cached = await self._read(self._reader.book_before, row.ticker, row.seq)
                    books[row.ticker] = cached[1].copy()
                    book = cached[1].copy()
                apply_row(book, row)
            assert row.seq is not None
            window.ends[row.ticker] = book
            self._books[row.ticker] = (row.seq, book)
        window.runs.add(step)
        return book_stream_rows(start, books, step, book_from_snapshot, window.seen)

    async def _put_part(
        self, table: str, base: str, index: int, rows: int, data: bytes
    ) -> dict[str, Any]:
        key = f"{base}part-{index:05d}.parquet"
        await self.target.put(key, data)
        metrics.EXPORT_BYTES.labels(table).inc(len(data))
        digest = hashlib.sha256(data).hexdigest()
        return {"key": key, "rows": rows, "bytes": len(data), "sha256": digest}

    async def _write_steps(
        self,
        table: str,
        base: str,
        steps: Generator[list[Any], None, None],
        times: list[int],
        rows_of: Callable[[list[Any]], Awaitable[Sequence[tuple[Any, ...]]]],
    ) -> list[dict[str, Any]]:
        """The parts of a window from ``steps`` (closed at the end, even when cancelled),
        each step's rows as ``rows_of`` makes them one row group, put as they fill: parts of
        up to :data:`PART_ROWS` rows, split where one fills; the book stream's window is
        one part (a file can be read alone: a market's ``start`` rows are its first).
        ``times`` gets the rows' window times (only the smallest and largest are kept)."""
        at = schema(table).get_field_index(EXPORT_TABLES[table])
        whole = table == "orderbook_deltas"
        files: list[dict[str, Any]] = []
        part = PartWriter(table)
        try:
            while (step := await self._read(next, steps, None)) is not None:
                rows = await rows_of(step)
                if rows:
                    found = [r[at] for r in rows]
                    times[:] = [min([*times, *found]), max([*times, *found])]
                while rows:
                    room = len(rows) if whole else PART_ROWS - part.rows
                    await trio.to_thread.run_sync(part.write, rows[:room])
                    rows = rows[room:]
                    if not whole and part.rows == PART_ROWS:
                        data = await trio.to_thread.run_sync(part.finish)
                        files.append(await self._put_part(table, base, len(files), part.rows, data))
                        part = PartWriter(table)
        finally:
            steps.close()  # the server-side cursors
        if part.rows or not files:
            data = await trio.to_thread.run_sync(part.finish)
            files.append(await self._put_part(table, base, len(files), part.rows, data))
        return files

    async def export_window(self, table: str, start: int) -> WindowExport:
        """Export one window of ``table`` (replacing an earlier export of it). It is
        recorded *partial* when the live gatherers' merge has not closed it yet (an
        ``until`` did), a *rewrite* when it was stale (rows reached it after its export)."""
        end = start + self.window_us
        column = EXPORT_TABLES[table]
        horizons = await self._read(self._reader.horizons, self.max_lag_us)
        partial = horizons is None or self._closes(table, start) > horizons.of(table)
        rewrite = await self._read(self._reader.was_stale, table, start)
        base = window_prefix(self.s3.prefix, table, start, self.window_us)
        times: list[int] = []
        if table == "orderbook_deltas":
            window = _Window()
            stream = await self.stream_steps(start, end)
            rows_of = functools.partial(self._stream_rows, start, window)
            files = await self._write_steps(table, base, stream, times, rows_of)
            digest = window.runs.digest()
        else:
            steps = await self._read(self._reader.row_steps, table, column, start, end)
            files = await self._write_steps(table, base, steps, times, _as_read)
            digest = f"rows:{sum(f['rows'] for f in files)}"
        manifest = {
            "table": table,
            "format": "parquet+zstd",
            "window": {"start_us": start, "end_us": end, "start": _iso(start), "end": _iso(end)},
            "rows": sum(f["rows"] for f in files),
            "time_range": {"min_us": min(times, default=None), "max_us": max(times, default=None)},
            "files": files,
            "gaps": await self._read(self._reader.gaps, start, end),
        }
        manifest_key = await self._publish(base, files, manifest)
        export = WindowExport(
            table,
            start,
            end,
            sum(int(f["rows"]) for f in files),
            sum(int(f["bytes"]) for f in files),
            (*(str(f["key"]) for f in files), manifest_key),
            partial,
            rewrite,
        )
        await self._read(self._reader.record, export, manifest, digest)
        metrics.EXPORT_WINDOWS.labels(table).inc()
        if rewrite:
            metrics.EXPORT_REWRITES.labels(table).inc()
        log.info(
            "%s %s %s: %d rows%s",
            "rewrote" if rewrite else "exported",
            table,
            _iso(start),
            export.rows,
            " (partial: not closed yet)" if partial else "",
        )
        return export


def _write_markets(part: PartWriter, rows: Sequence[Row]) -> None:
    part.write(market_rows(rows))


async def _as_read(rows: list[Row]) -> list[Row]:
    return rows


class _Runs:
    """Per market of a book stream read so far: its lowest and highest ``seq`` and its
    rows (what :func:`stream_digest` hashes)."""

    def __init__(self) -> None:
        self.runs: dict[str, list[int]] = {}

    def add(self, stream: Iterable[DeltaRow | SnapshotRow]) -> None:
        for row in stream:
            assert row.seq is not None
            run = self.runs.setdefault(row.ticker, [row.seq, row.seq, 0])
            run[0], run[1], run[2] = min(run[0], row.seq), max(run[1], row.seq), run[2] + 1

    def digest(self) -> str:
        text = json.dumps(sorted([t, *r] for t, r in self.runs.items()))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@define
class _Window:
    """What the export of one book-stream window carries from step to step."""

    ends: dict[str, OrderBook] = field(factory=dict)  # each market's book after its last row
    seen: set[str] = field(factory=set)  # the markets with rows written (their start rows too)
    runs: _Runs = field(factory=_Runs)  # the window's digest


def stream_digest(stream: Iterable[DeltaRow | SnapshotRow]) -> str:
    """Pure: what a book-stream window holds, as ``sha256:<hex>`` of its markets' seq
    ranges (a window holds, per market, one contiguous run of the merged stream)."""
    runs = _Runs()
    runs.add(stream)
    return runs.digest()
