"""The merge loop: gatherer databases -> production, one pass at a time.

A pass (:meth:`Deduplicator.run_pass`):

1. asks every gatherer database for its newest time (its *high water*); one that cannot be
   reached is skipped with a warning (and read from its cursor when it is back);
2. copies each reachable gatherer's keyed tables (:mod:`kalshi.dedup.tables`) up to
   ``settle`` ago (a gatherer far behind: up to its newest row), comparing per-second
   digests first so that only stretches where it may add something are read, in steps of
   up to :data:`KEYED_READ_ROWS` rows written in transactions of ``sync.batch_size``, the
   last of each step also moving its cursor;
3. merges the order books, by time of receipt (frame order), each live gatherer (reachable,
   no more than ``sync.max_lag`` behind the newest) from its own cursor up to its own
   ingest watermark, in its own clock (no clock is compared with another's); a gatherer far
   behind is left out rather than waited for. Each merge step (at most
   :data:`MERGE_STEP_US` of exchange time) is one transaction with its checkpoints. Both
   run side by side on their own connections.

``settle`` leaves the gatherers' writers time to flush before their keyed tables are copied
(their batches arrive up to a few seconds after they were received); ``--once`` uses 0.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import trio
from attrs import define, field

from kalshi.clock import WallClock, system_wall_us
from kalshi.config import DedupConfig
from kalshi.dedup import coverage, metrics
from kalshi.dedup.gatherers import GathererDb
from kalshi.dedup.merge import (
    DEDUP_ID,
    HOLE_KIND,
    Checkpoint,
    MarketMerge,
    merge_market,
    point_ts,
)
from kalshi.dedup.production import Cursor, Production
from kalshi.dedup.segments import Segment, build_segments, cut_at_gaps
from kalshi.dedup.tables import DIGEST_BUCKET_US, KEYED, KeyedTable
from kalshi.errors import DatabaseUnavailable, ExportError, GathererError, StoreError
from kalshi.http import serve_endpoints
from kalshi.http.views import dedup_metrics
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow
from kalshi.models.units import format_rfc3339_us

__all__ = [
    "DEFAULT_SETTLE",
    "MERGE_STEP_US",
    "Deduplicator",
    "PassReport",
    "WindowExporter",
    "serve_dedup",
]

log = logging.getLogger("kalshi.dedup")

DEFAULT_SETTLE = 5.0
"""Seconds a gatherer's newest rows are left alone (its writers flush within this)."""
MERGE_STEP_US = 300_000_000
"""Exchange time merged per order-book transaction (5 minutes)."""
GAP_LOOKBACK_US = 60_000_000
KEYED_STEP_US = 60_000_000
"""Receipt time whose digests (per second) are compared at once."""
DIGEST_SPAN_US = 600_000_000
"""The longest receipt span of one keyed-table step whose rows are compared by digest
before they are read (longer: read them all, production drops those it has)."""
MAX_RANGES = 50
KEYED_READ_ROWS = 20_000
"""Rows of a keyed table read from a gatherer per step (at least ``sync.batch_size``): one
commit span, one digest comparison and one read per step, the rows then written in
production transactions of ``sync.batch_size``. Steps of a batch cost a pass about 750
round-trip chains for 100,000 exchange events at the shipped batch of 100 (issue 19: the
merge at 0.20 of a bare COPY); the bound keeps a catch-up after an outage in memory."""

T = TypeVar("T")


@define
class PassReport:
    merged: dict[str, int] = field(factory=lambda: defaultdict(int))
    duplicates: dict[str, int] = field(factory=lambda: defaultdict(int))
    switches: int = 0
    holes: int = 0
    skipped: list[str] = field(factory=list)


@define
class _GathererState:
    up: bool | None = None  # None until the first probe answers (unknown is not up)
    error: str = ""
    high_water: int | None = None  # newest time in its tables
    complete: int | None = None  # every row received up to it is written (None: all)
    received: int | None = None  # newest receipt of an order-book row
    commit: int = 0  # its rows written by transactions below this id are final (ingest_xid)
    ids: dict[str, int | None] = field(factory=dict)  # gatherer ids in its database


@define
class _Window:
    """One live gatherer's order-book rows in the current merge step: the newest delta
    time and the snapshots of every market it touched, and the deltas of the markets it
    is the source of (the others' deltas are read only when a market needs them)."""

    db: GathererDb
    low: int  # its cursor and its end in this step (its own clock: receipts)
    high: int
    latest: dict[str, int] = field(factory=dict)
    snapshots: dict[str, list[SnapshotRow]] = field(factory=dict)
    deltas: dict[str, list[DeltaRow]] = field(factory=dict)
    gaps: list[GapRow] = field(factory=list)

    @property
    def progress(self) -> int:
        """The newest exchange time of any delta in the window."""
        return max(self.latest.values(), default=0)


class Deduplicator:
    """Merges ``cfg.gatherers`` into ``cfg.production``. Not thread-safe; one pass at a time."""

    def __init__(
        self,
        cfg: DedupConfig,
        *,
        settle: float = DEFAULT_SETTLE,
        wall_us: WallClock = system_wall_us,
    ) -> None:
        self.cfg = cfg
        self.settle_us = int(settle * 1_000_000)
        self._wall_us = wall_us
        # sync.statement_timeout/lock_timeout (seconds, 0 = none) on every session
        bounds: dict[str, Any] = {
            "statement_timeout": float(cfg.sync.statement_timeout),
            "lock_timeout": float(cfg.sync.lock_timeout),
        }
        self._bounds = bounds
        self._gatherers = [GathererDb(source, **bounds) for source in cfg.gatherers]
        # The order books are merged alongside the keyed tables, on their own connections.
        self._book_readers = {source.id: GathererDb(source, **bounds) for source in cfg.gatherers}
        self._prefer = [g.id for g in self._gatherers]
        self._state = {g.id: _GathererState() for g in self._gatherers}
        self._production: tuple[Production, Production] | None = None
        self._production_error = ""
        # None until a pass reaches production (unknown is not up), then its last outcome
        self._production_up: bool | None = None
        self._cursors: dict[tuple[str, str], Cursor] = {}
        self._behind: dict[tuple[str, str], int] = {}  # keyed tables' lag, µs (_lag)
        # channel holes written (sid, start, end): not offered to production again
        self._channel_written: set[tuple[int | None, int, int | None]] = set()
        self.passes = 0
        # Shutdown: the database calls in flight (each shielded) and when they are given up.
        self._in_flight: set[trio.CancelScope] = set()
        self._give_up_at: float | None = None
        self.abandoned = 0
        """Database calls given up at shutdown after the grace (their connections are left
        to the process's exit; PostgreSQL rolls their transactions back)."""

    # --- plumbing ---------------------------------------------------------------------

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking database call in a worker thread. A cancellation (shutdown)
        lets it finish for up to the grace :meth:`stop_within` set, so its transaction
        commits or rolls back whole; past that the thread is abandoned, and the
        cancellation goes on."""
        with trio.CancelScope(shield=True) as scope:
            if self._give_up_at is not None:
                scope.deadline = self._give_up_at
            self._in_flight.add(scope)
            try:
                return await trio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)
            finally:
                self._in_flight.discard(scope)
        # only reached when the grace ran out
        self.abandoned += 1
        await trio.lowlevel.checkpoint()  # raises the pending cancellation
        raise DatabaseUnavailable("database call abandoned at shutdown")

    def stop_within(self, grace: float) -> None:
        """Shutdown began: the database calls in flight (and any started later) are given
        up ``grace`` seconds from now."""
        self._give_up_at = trio.current_time() + grace
        for scope in self._in_flight:
            scope.deadline = min(scope.deadline, self._give_up_at)

    async def _prod(self) -> tuple[Production, Production]:
        """Two production connections: keyed tables, and order books. Connections kept
        from an earlier pass are pinged first, so that a pass that writes nothing (every
        gatherer skipped) still finds production gone and /health says so (outside tester
        F8: ``up`` stayed true while the shared server was down)."""
        if self._production is not None:
            await self._thread(self._production[0].ping)
        if self._production is None:
            opened = partial(
                Production, self.cfg.production.url, wall_us=self._wall_us, **self._bounds
            )
            keyed = await self._thread(partial(opened, exclusive=True))
            try:
                books = await self._thread(opened)
            except BaseException:
                keyed.close()
                raise
            self._production = (keyed, books)
            self._cursors = await self._thread(keyed.cursors)
        return self._production

    def _drop_production(self, exc: BaseException | None = None) -> None:
        if self._production is not None:
            for production in self._production:
                production.close()
            self._production = None
        if exc is not None:
            self._production_error = str(exc)
            self._production_up = False

    def close(self) -> None:
        if self.abandoned:  # a worker thread may still be inside a connection
            return
        for gatherer in [*self._gatherers, *self._book_readers.values()]:
            gatherer.close()
        self._drop_production()

    def _cursor(self, gatherer_id: str, table: str) -> Cursor:
        return self._cursors.get((gatherer_id, table), Cursor(None, 0))

    def _moved(self, gatherer_id: str, table: str, cursor: Cursor) -> None:
        self._cursors[gatherer_id, table] = cursor
        metrics.LAG.labels(gatherer_id, table).set(self._lag(gatherer_id, table, cursor))

    def _reached(self, gatherer_id: str, horizon: int) -> int:
        """``horizon`` (a receipt, the gatherer's clock) as exchange time: less the largest
        ``received_at - exchange_ts`` of its newest deltas (:meth:`GathererDb.measure_offset`:
        its clock's offset plus latency, measured on its own rows), so that every row it
        received up to ``horizon`` was stamped by the exchange before. The export closes
        windows by it (:mod:`kalshi.dedup.export`); no clock is compared with another's."""
        return horizon - self._book_readers[gatherer_id].offset[1]

    def _keyed_cursor(self, gatherer_id: str, high: int, committed: int | None) -> Cursor:
        return Cursor(None, high, self._reached(gatherer_id, high), high, committed)

    def _book_cursor(self, gatherer: GathererDb, high: int) -> Cursor:
        """The order-book cursor at ``high``, with what the export closes windows by
        (:meth:`_reached`); for finished history (a database with no watermark: every row
        is final) merged to its newest receipt nothing more can come, so as far as its
        keyed tables go (settled, in its clock)."""
        to = high
        state = self._state[gatherer.id]
        if state.complete is None and state.received is not None and high >= state.received:
            to = max(high, self._settled_for(gatherer, self._wall_us() - self.settle_us))
        return Cursor(None, high, self._reached(gatherer.id, to), to)

    def _lag(self, gatherer_id: str, table: str, cursor: Cursor) -> float:
        """The merge's lag on ``table`` of a gatherer, seconds: the receipt of the newest
        row the gatherer has committed to it minus the receipt of the newest of those rows
        the merge has read (merged, or dropped as production's already), both stamped by
        the gatherer's own clock, so a clock minutes off is not lag; 0 when read through.
        ``orderbook_deltas``: its newest order-book row (a delta or a WebSocket snapshot)
        minus the receipt the book merge read through (the cursor); the keyed tables: their
        newest rows by commit order (``ingest_xid``), measured after each copy
        (:meth:`_measure_lag`). Before (outside tester F6), every table's lag was the
        watermark or newest order-book row minus its cursor: trades read 5.97 s while the
        newest trade merged was 0.48 s behind the gatherer's newest."""
        if table != "orderbook_deltas":
            return self._behind.get((gatherer_id, table), 0) / 1_000_000
        newest = self._state[gatherer_id].received
        return 0.0 if newest is None else max(0, newest - cursor.horizon) / 1_000_000

    async def _measure_lag(self, gatherer: GathererDb, table: KeyedTable) -> None:
        """Measure :meth:`_lag` of ``table`` after its copy and publish it."""
        cursor = self._cursor(gatherer.id, table.name)
        newest, read = await self._thread(gatherer.read_receipts, table, cursor.committed)
        self._behind[gatherer.id, table.name] = 0 if newest is None else max(0, newest - read)
        metrics.LAG.labels(gatherer.id, table.name).set(self._lag(gatherer.id, table.name, cursor))

    # --- a pass -----------------------------------------------------------------------

    async def run_pass(self, *, settle_us: int | None = None) -> PassReport:
        """One pass over every gatherer; returns what it merged.

        Raises :class:`DatabaseUnavailable` when the production database cannot be reached
        (nothing half-done stays behind: every write is its own transaction) and
        :class:`StoreError` for other production failures. A gatherer database that fails
        (:class:`GathererError`: it restarted, a lock timeout) is skipped for the rest of the
        pass, listed in :attr:`PassReport.skipped` and retried at the next one.
        """
        settle = self.settle_us if settle_us is None else settle_us
        report = PassReport()
        failures: list[StoreError] = []
        try:
            keyed, books = await self._prod()
            reachable = await self._probe(report)
            settled = self._wall_us() - settle
            async with trio.open_nursery() as nursery:

                async def guarded(work: Callable[[], Awaitable[None]]) -> None:
                    try:
                        await work()
                    except GathererError as exc:  # that gatherer's share waits a pass
                        self._gatherer_down(exc, report)
                    except StoreError as exc:
                        failures.append(exc)
                        nursery.cancel_scope.cancel()

                nursery.start_soon(
                    guarded, partial(self._copy_all, keyed, reachable, settled, report)
                )
                readers = [self._book_readers[g.id] for g in reachable]
                nursery.start_soon(
                    guarded,
                    partial(self._merge_books, books, readers, report),
                )
            if failures:
                raise failures[0]
            await self._channel_holes(keyed, reachable, report)
        except StoreError as exc:
            if isinstance(exc, DatabaseUnavailable):
                self._drop_production(exc)
            raise
        self._production_error = ""
        self._production_up = True
        self.passes += 1
        return report

    async def _copy_all(
        self, production: Production, reachable: list[GathererDb], settled: int, report: PassReport
    ) -> None:
        live = {g.id for g in self._live(reachable)}
        for gatherer in reachable:
            high = self._state[gatherer.id].high_water
            assert high is not None
            # A live gatherer has written everything it received before `settled` (by its
            # own clock); one far behind may still write older rows, so its cursor stays at
            # its newest row.
            own = self._settled_for(gatherer, settled)
            horizon = own if gatherer.id in live else min(high, own)
            horizon = self._complete(gatherer, horizon)
            try:
                for table in KEYED.values():
                    await self._copy_keyed(production, gatherer, table, horizon, report)
                    await self._measure_lag(gatherer, table)
            except GathererError as exc:  # the others' rows are copied all the same
                self._gatherer_down(exc, report)

    async def _channel_holes(
        self, production: Production, reachable: list[GathererDb], report: PassReport
    ) -> None:
        """Record where no gatherer covered a whole-exchange channel (trades, tickers,
        lifecycle): the intersection of the gatherers' ``outage``/``reconnect``/``stopped``
        stretches (:mod:`kalshi.dedup.coverage`), each in exchange time by its gatherer's
        clock offset (both ends less the smallest ``received_at - exchange_ts`` of its
        newest deltas: the largest grows with any backlog of its reading, which moved the
        start before either gatherer stopped, outside tester F2), as ``merge_hole`` rows
        with ``ticker`` NULL, ``sid`` the channel's (:data:`coverage.CHANNEL_SID`) and
        ``detail`` naming the channel;
        one already stored (overlapping, same channel) is not written again
        (:meth:`Production.commit_holes`). Only when every
        gatherer answered (one not read may have covered it), and only up to where every
        live gatherer's stretches are final (its ingest watermark); a gatherer further
        behind than ``sync.max_lag`` counts as uncovered from its newest row on."""
        if report.skipped or len(reachable) != len(self._gatherers):
            return
        live = {g.id for g in self._live(reachable)}
        uncovered: dict[str, dict[str, list[tuple[int, int]]]] = {}
        until = 2**62
        try:
            for gatherer in reachable:
                low = self._book_readers[gatherer.id].offset[0]
                mine: dict[str, list[tuple[int, int]]] = {}
                for detail, start, end in await self._thread(gatherer.uncovered):
                    channel = coverage.channel_of(detail or "")
                    if channel is not None:
                        mine.setdefault(channel, []).append((start - low, end - low))
                state = self._state[gatherer.id]
                if gatherer.id in live:
                    if state.complete is not None and state.complete < 2**62 - 1:
                        until = min(until, state.complete - low)
                elif state.high_water is not None:
                    for channel in coverage.CHANNEL_SID:
                        mine.setdefault(channel, []).append((state.high_water, 2**62))
                uncovered[gatherer.id] = mine
        except GathererError as exc:
            self._gatherer_down(exc, report)
            return
        found = coverage.holes(uncovered, until)
        rows = [
            GapRow(
                start_ts=start,
                end_ts=end,
                gatherer_id=DEDUP_ID,
                conn_id=0,
                sid=coverage.CHANNEL_SID[channel],
                ticker=None,
                kind=HOLE_KIND,
                expected_seq=None,
                got_seq=None,
                detail=f"{channel}: no gatherer connected ({', '.join(sorted(uncovered))})",
            )
            for channel, stretches in found.items()
            for start, end in stretches
        ]
        rows = [r for r in rows if (r.sid, r.start_ts, r.end_ts) not in self._channel_written]
        inserted = await self._thread(production.commit_holes, rows)
        self._channel_written.update((r.sid, r.start_ts, r.end_ts) for r in rows)
        report.merged["gaps"] += inserted
        report.holes += inserted
        metrics.HOLES.inc(inserted)
        if inserted:
            log.warning("%d channel holes (no gatherer connected) recorded", inserted)

    def _gatherer_down(self, exc: GathererError, report: PassReport) -> None:
        """Record that ``exc.gatherer_id``'s database failed: logged once per outage by its
        name, /health and ``kalshi_dedup_gatherer_up`` say so, the pass lists it skipped."""
        state = self._state[exc.gatherer_id]
        if state.up is not False:
            log.warning("gatherer %s skipped: %s", exc.gatherer_id, exc.cause)
        state.up, state.error = False, str(exc.cause)
        metrics.GATHERER_UP.labels(exc.gatherer_id).set(0)
        if exc.gatherer_id not in report.skipped:
            report.skipped.append(exc.gatherer_id)

    def _settled_for(self, gatherer: GathererDb, settled: int) -> int:
        """``settled`` (our clock) in ``gatherer``'s clock, which stamps its receipts: shifted
        by its measured offset from the exchange (:meth:`GathererDb.measure_offset`), so a
        clock ahead of ours does not hide its newest rows."""
        return settled + max(0, self._book_readers[gatherer.id].offset[0])

    def _complete(self, gatherer: GathererDb, horizon: int) -> int:
        """``horizon`` capped by what the gatherer has committed (its ingest watermark,
        exclusive: :meth:`GathererDb.complete_through`; rows still on their way, e.g.
        spooled while its database was down, arrive later with old times)."""
        mark = self._state[gatherer.id].complete
        return horizon if mark is None else min(horizon, mark)

    async def _probe(self, report: PassReport) -> list[GathererDb]:
        reachable = []
        for gatherer in self._gatherers:
            state = self._state[gatherer.id]
            try:
                state.high_water = await self._thread(gatherer.high_water)
                state.received = await self._thread(gatherer.received_water)
                state.complete = await self._thread(gatherer.complete_through)
                state.commit = await self._thread(gatherer.safe_commit)
                ids = await self._thread(gatherer.gatherer_ids)
                if ids != state.ids and set(ids) - {gatherer.id}:
                    log.warning("%s", _foreign_ids(gatherer.id, ids))
                state.ids = ids
                # its clock's offset from the exchange's, for reading its rows by receipt
                offset = await self._thread(gatherer.measure_offset)
                self._book_readers[gatherer.id].offset = offset
                metrics.CLOCK_OFFSET.labels(gatherer.id).set(offset[0] / 1_000_000)
            except GathererError as exc:
                self._gatherer_down(exc, report)
                continue
            if state.up is False:
                log.info("gatherer %s reachable again", gatherer.id)
            state.up, state.error = True, ""
            for (gid, table), cursor in self._cursors.items():
                if gid == gatherer.id:  # its newest receipt moved, its cursors may not
                    metrics.LAG.labels(gid, table).set(self._lag(gid, table, cursor))
            metrics.GATHERER_UP.labels(gatherer.id).set(1)
            if state.high_water is not None:
                reachable.append(gatherer)
        return reachable

    async def _copy_keyed(
        self,
        production: Production,
        gatherer: GathererDb,
        table: KeyedTable,
        horizon: int,
        report: PassReport,
    ) -> None:
        """Copy ``gatherer``'s rows of ``table`` in the order its transactions committed
        (``ingest_xid``, migration 009) up to its safe commit horizon
        (:meth:`GathererDb.safe_commit`): a row written into its database after the merge
        passed its receive time (a replay, a spool drained, a REST backfill) is merged when
        it is committed, exactly once. ``horizon`` (a receipt in the gatherer's clock, capped
        by its watermark) is recorded with the cursor for the export and the lag: what the
        gatherer guarantees it has written, not what is read."""
        cursor = self._cursor(gatherer.id, table.name)
        if cursor.committed is None:
            cursor = await self._copy_legacy(production, gatherer, table, cursor, report)
        safe = self._state[gatherer.id].commit
        horizon = max(horizon, cursor.horizon)
        step = max(1, self.cfg.sync.batch_size, KEYED_READ_ROWS)
        low = cursor.committed
        assert low is not None
        while True:
            high = low
            rows: list[Row] = []
            if low < safe:
                high = await self._thread(gatherer.commit_step, table, low, safe, step)
                span = await self._thread(gatherer.commit_span, table, low, high)
                if span is not None:
                    # Rows production has (another gatherer's copies) are not read: per-second
                    # digests of the stretch they were received in, a minute at a time, when
                    # it is short (a replay of old rows spans hours: read them all).
                    ranges: list[tuple[int, int]] | None = None
                    if table.digested and span[1] - span[0] <= DIGEST_SPAN_US:
                        ranges = []
                        at = span[0] - 1
                        while at < span[1]:
                            end = min(span[1], at + KEYED_STEP_US)
                            ranges += await self._changed(production, gatherer, table, at, end)
                            at = end
                    rows = await self._thread(gatherer.keyed_rows, table, ranges, (low, high))
            done = high >= safe
            moved = self._keyed_cursor(gatherer.id, horizon if done else cursor.horizon, high)
            if moved == cursor:
                return
            await self._commit_keyed(production, gatherer, table, rows, cursor, moved, report)
            cursor, low = moved, high
            if done:
                return

    async def _commit_keyed(
        self,
        production: Production,
        gatherer: GathererDb,
        table: KeyedTable,
        rows: list[Row],
        cursor: Cursor,
        moved: Cursor,
        report: PassReport,
    ) -> None:
        """Insert ``rows`` in transactions of ``sync.batch_size``; the last moves the cursor
        from ``cursor`` to ``moved``, the others leave it (a crash between them: the next
        pass reads the step again and production drops the rows it has)."""
        batch = max(1, self.cfg.sync.batch_size)
        for start in range(0, max(len(rows), 1), batch):
            chunk = rows[start : start + batch]
            last = start + batch >= len(rows)
            counts = await self._thread(
                production.commit_keyed, gatherer.id, table, chunk, moved if last else None
            )
            report.merged[table.name] += counts.inserted
            report.duplicates[table.name] += counts.duplicates
            metrics.ROWS_MERGED.labels(table.name).inc(counts.inserted)
            metrics.DUPLICATES.labels(table.name).inc(counts.duplicates)
        self._moved(gatherer.id, table.name, moved)

    async def _copy_legacy(
        self,
        production: Production,
        gatherer: GathererDb,
        table: KeyedTable,
        cursor: Cursor,
        report: PassReport,
    ) -> Cursor:
        """Rows written before migration 009 (no ``ingest_xid``): read once by receipt
        from the cursor on, a minute of receipts per step, all of them (they are final);
        then the cursor goes by commit (``committed`` 0)."""
        low = cursor.horizon
        legacy = await self._thread(gatherer.has_legacy, table)
        while legacy and (first := await self._thread(gatherer.next_time, table, low)) is not None:
            low = max(low, first - 1)
            high = low + KEYED_STEP_US
            rows = await self._thread(gatherer.keyed_rows, table, [(low, high)])
            moved = self._keyed_cursor(gatherer.id, high, None)
            await self._commit_keyed(production, gatherer, table, rows, cursor, moved, report)
            cursor, low = moved, high
        moved = cursor._replace(committed=0)
        await self._commit_keyed(production, gatherer, table, [], cursor, moved, report)
        return moved

    async def _changed(
        self,
        production: Production,
        gatherer: GathererDb,
        table: KeyedTable,
        low: int,
        high: int,
    ) -> list[tuple[int, int]]:
        """The stretches of ``(low, high]`` where the gatherer may have rows production
        lacks: time buckets whose digests differ (all of it for upserted tables)."""
        if not table.digested:
            return [(low, high)]
        theirs = await self._thread(gatherer.digests, table, low, high)
        ours = await self._thread(production.digests, table, low, high)
        ranges: list[tuple[int, int]] = []
        for bucket in sorted(b for b, d in theirs.items() if ours.get(b) != d):
            start = max(low, bucket * DIGEST_BUCKET_US - 1)
            end = min(high, (bucket + 1) * DIGEST_BUCKET_US - 1)
            if ranges and ranges[-1][1] >= start:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((start, end))
        if len(ranges) > MAX_RANGES:
            return [(low, high)]
        return ranges

    async def _read_into(self, out: list[T], fn: Callable[..., T], *args: Any) -> None:
        out.append(await self._thread(fn, *args))

    def _live(self, reachable: Iterable[GathererDb]) -> list[GathererDb]:
        highs = {g.id: self._state[g.id].high_water for g in reachable}
        known = {g: h for g, h in highs.items() if h is not None}
        if not known:
            return []
        lead = max(known.values())
        max_lag = int(self.cfg.sync.max_lag * 1_000_000)
        return [g for g in reachable if g.id in known and known[g.id] >= lead - max_lag]

    def _committed(self, gatherer: GathererDb) -> int | None:
        """Up to when (µs, the gatherer's own clock, inclusive) its order-book rows are all
        in its database: the receipt before its ingest watermark
        (:meth:`GathererDb.complete_through`); for one that records none (history written by a
        replay, whose rows are all final), its newest receipt. ``None``: it has no
        order-book row."""
        state = self._state[gatherer.id]
        return state.complete if state.complete is not None else state.received

    async def _merge_books(
        self, production: Production, reachable: list[GathererDb], report: PassReport
    ) -> None:
        """Merge in steps until every live gatherer's rows up to what it has committed
        (:meth:`_committed`, in its own clock) are merged.

        Each gatherer is read by receipt from its own cursor to its own end: no clock is
        compared with another's. The steps keep the gatherers' windows side by side in
        exchange time: a step runs to :data:`MERGE_STEP_US` past the earliest exchange time
        any gatherer has left, each gatherer's end placed by the receipt and exchange time
        of its own next delta; and no further than every live gatherer has progressed (the
        newest exchange time it has committed, or the exchange time its end stands for),
        so that one whose rows are late (its database was down) still serves the stretch.
        """
        live = self._live(reachable)
        ends = {g.id: self._committed(g) for g in live}
        bound: int | None = None  # exchange time every live gatherer has reached
        holes: list[str] = []  # the markets of the pass's order-book holes, one per hole
        for g in live:
            end = ends[g.id]
            if end is None:
                continue  # no order-book rows: nothing to wait for
            progress = await self._thread(g.progress, end)
            reached = max(progress or 0, end - g.offset[1])
            bound = reached if bound is None else min(bound, reached)
        while True:
            nexts: dict[str, tuple[int, int] | None] = {}
            for g in live:
                low, end = self._cursor(g.id, "orderbook_deltas").horizon, ends[g.id]
                if end is not None and low < end:
                    nexts[g.id] = await self._thread(g.next_delta, low, end)
            if not nexts:
                break
            first = [pair[1] for pair in nexts.values() if pair is not None]
            stop = min(first) + MERGE_STEP_US if first else 0
            if bound is not None:
                stop = min(stop, bound)
            highs: dict[str, int] = {}
            for g in live:
                low = self._cursor(g.id, "orderbook_deltas").horizon
                end = ends[g.id]
                high = low
                if g.id in nexts:
                    pair = nexts[g.id]
                    assert end is not None
                    # snapshots only: all of them; else as far as its exchange time `stop`
                    high = end if pair is None else min(end, pair[0] + stop - pair[1])
                highs[g.id] = max(low, high)
            if all(highs[g.id] <= self._cursor(g.id, "orderbook_deltas").horizon for g in live):
                break  # waiting for a live gatherer's rows
            await self._merge_step(production, live, highs, report, holes)
        if holes:
            log.warning("%s", _holes_summary(holes))

    async def _load(self, gatherer: GathererDb, high: int) -> _Window:
        low = self._cursor(gatherer.id, "orderbook_deltas").horizon
        window = _Window(gatherer, low, max(low, high))
        if low >= high:
            return window
        window.latest = await self._thread(gatherer.latest_deltas, low, high)
        for snap in gatherer.dated(await self._thread(gatherer.snapshots_between, low, high)):
            window.snapshots.setdefault(snap.ticker, []).append(snap)
        window.gaps = await self._thread(gatherer.gaps_since, max(0, low - GAP_LOOKBACK_US))
        return window

    def _first_source(self, ticker: str, windows: Mapping[str, _Window]) -> str | None:
        """The gatherer whose snapshot starts a market never merged (earliest, preferred)."""
        starts = [
            (point_ts(s), self._prefer.index(gid), gid)
            for gid, w in windows.items()
            for s in w.snapshots.get(ticker, ())
        ]
        return min(starts)[2] if starts else None

    async def _merge_step(
        self,
        production: Production,
        live: list[GathererDb],
        highs: Mapping[str, int],
        report: PassReport,
        found: list[str],
    ) -> None:
        """Merge every market up to ``highs``; the tickers of its holes are added to
        ``found`` (one per hole)."""
        windows = {g.id: await self._load(g, highs[g.id]) for g in live}
        tickers = set(await self._thread(production.waiting))
        for window in windows.values():
            tickers.update(window.latest, window.snapshots)
        checkpoints = await self._thread(production.checkpoints, sorted(tickers))
        sources: dict[str, list[str]] = defaultdict(list)
        for ticker in tickers:
            ckpt = checkpoints.get(ticker)
            source = ckpt.gatherer_id if ckpt is not None else self._first_source(ticker, windows)
            if source in windows and ticker in windows[source].latest:
                sources[source].append(ticker)
        for gatherer_id, wanted in sources.items():
            window = windows[gatherer_id]
            for row in await self._thread(
                window.db.deltas_of, sorted(wanted), window.low, window.high
            ):
                window.deltas.setdefault(row.ticker, []).append(row)
        results: list[MarketMerge] = []
        slow: list[str] = []
        for ticker in sorted(tickers):
            fast = self._merge_fast(ticker, checkpoints.get(ticker), windows)
            if fast is None:
                slow.append(ticker)
            else:
                results.append(fast)
        # Markets that need another gatherer: never merged ones start from this step's rows
        # (one read per gatherer for all of them), the others from each gatherer's history.
        fresh = [t for t in slow if t not in checkpoints]
        for window in windows.values():
            wanted = [t for t in fresh if t in window.latest and t not in window.deltas]
            for row in await self._thread(window.db.deltas_of, wanted, window.low, window.high):
                window.deltas.setdefault(row.ticker, []).append(row)
        for ticker in slow:
            results.append(await self._merge_slow(ticker, checkpoints.get(ticker), windows))
        deltas = [row for r in results for row in r.deltas]
        snapshots = [_undated(row) for r in results for row in r.snapshots]
        holes = [row for r in results for row in r.holes]
        changed = [
            r.checkpoint
            for r in results
            if r.checkpoint is not None and r.checkpoint != checkpoints.get(r.ticker)
        ]
        cursors = {g.id: self._book_cursor(g, windows[g.id].high) for g in live}
        await self._thread(production.commit_merge, deltas, snapshots, holes, changed, cursors)
        for gatherer_id, cursor in cursors.items():
            self._moved(gatherer_id, "orderbook_deltas", cursor)
        switches = sum(r.switches for r in results)
        report.merged["orderbook_deltas"] += len(deltas)
        report.merged["orderbook_snapshots"] += len(snapshots)
        report.merged["gaps"] += len(holes)
        report.switches += switches
        report.holes += len(holes)
        metrics.ROWS_MERGED.labels("orderbook_deltas").inc(len(deltas))
        metrics.ROWS_MERGED.labels("orderbook_snapshots").inc(len(snapshots))
        metrics.SWITCHES.inc(switches)
        metrics.HOLES.inc(len(holes))
        found.extend(hole.ticker or "" for hole in holes)
        for hole in holes:  # one line each at DEBUG; the pass logs one summary line
            log.debug("order-book hole in %s: %s", hole.ticker, hole.detail)

    def _merge_fast(
        self, ticker: str, ckpt: Checkpoint | None, windows: Mapping[str, _Window]
    ) -> MarketMerge | None:
        """Extend ``ticker`` from its source alone; ``None`` when another gatherer is
        needed (the source ended or is down, or another gatherer is ahead of it)."""
        if ckpt is not None:
            window = windows.get(ckpt.gatherer_id)
            if window is None:
                return None
            source = _continuation(ckpt, window)
            if source.cut:
                return None
            result = merge_market(ticker, ckpt, source, (), prefer=self._prefer)
        else:
            first = self._first_source(ticker, windows)
            start = [] if first is None else _segments(first, ticker, windows[first])
            start.sort(key=lambda s: point_ts(s.snapshot) if s.snapshot else 0)
            result = merge_market(ticker, None, None, start[:1], prefer=self._prefer)
        end = result.checkpoint
        if end is None or end.waiting:
            return None
        # Another gatherer has a later delta of this market that the source lacks although
        # it has seen later times (on any market): the source missed it.
        progress = windows[end.gatherer_id].progress
        if any(end.exchange_ts < w.latest.get(ticker, 0) <= progress for w in windows.values()):
            return None
        return result

    async def _merge_slow(
        self, ticker: str, ckpt: Checkpoint | None, windows: Mapping[str, _Window]
    ) -> MarketMerge:
        """Extend ``ticker`` with every live gatherer's segments as candidates."""
        candidates: list[Segment] = []
        for gatherer_id, window in windows.items():
            if ckpt is None:
                # Never merged: no live gatherer had a snapshot of it before this step
                # (that would have started it), so the step's rows are its whole history.
                candidates += _segments(gatherer_id, ticker, window)
                continue
            snaps, deltas, gaps = await self._thread(
                window.db.market_history, ticker, ckpt.last_ts, window.high
            )
            candidates += build_segments(gatherer_id, ticker, window.db.dated(snaps), deltas, gaps)
        source_window = windows.get(ckpt.gatherer_id) if ckpt is not None else None
        source = (
            _continuation(ckpt, source_window)
            if ckpt is not None and source_window is not None
            else None
        )
        return merge_market(
            ticker,
            ckpt,
            source,
            candidates,
            prefer=self._prefer,
            source_alive=source_window is not None,
        )

    # --- reporting --------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The ``/health`` document: ``ok`` while production and a gatherer answer.

        ``lag_seconds`` per ``gatherer/table``: how far the merge trails what the gatherer
        has, in the gatherer's own clock (:meth:`_lag`); its clock's offset from the
        exchange's is reported apart, per gatherer (``clock_offset_s``: the smallest
        ``received_at - exchange_ts`` of its newest deltas, latency included)."""
        gatherers = {
            gid: {
                "up": s.up,
                "error": s.error,
                "high_water_us": s.high_water,
                "clock_offset_s": round(self._book_readers[gid].offset[0] / 1_000_000, 3),
                "gatherer_ids": sorted(s.ids),
            }
            for gid, s in self._state.items()
        }
        lag = {
            f"{gid}/{table}": round(self._lag(gid, table, c), 3)
            for (gid, table), c in sorted(self._cursors.items())
            if gid in self._state
        }
        ok = self._production_up is not False and any(s.up is True for s in self._state.values())
        return {
            "status": "ok" if ok else "degraded",
            "service": "dedup",
            "passes": self.passes,
            "production": {"up": self._production_up, "error": self._production_error},
            "gatherers": gatherers,
            "lag_seconds": lag,
        }


def _foreign_ids(configured: str, ids: Mapping[str, int | None]) -> str:
    """The warning for a gatherer database that holds other gatherers' ids (outside tester,
    item 3: the demo's rows, ``demo-1``, in the database configured as ``local-1``)."""
    marks = ", ".join(
        f"{gid} {'no watermark' if at is None else 'watermark ' + format_rfc3339_us(at)}"
        for gid, at in ids.items()
    )
    return (
        f"gatherer {configured}: its database holds the gatherer ids {', '.join(ids)}"
        f" ({marks}), configured as {configured}: every row is merged as one gatherer's, and"
        " its order books are merged only up to the oldest watermark; give each gatherer its"
        " own database (docs/dedup.md, one database per gatherer)"
    )


def _undated(row: SnapshotRow) -> SnapshotRow:
    """A WebSocket snapshot as its gatherer stored it: without the exchange time
    :meth:`GathererDb.dated` estimated (the frame has none)."""
    return row._replace(exchange_ts=None) if row.source == "ws" else row


def _segments(gatherer_id: str, ticker: str, window: _Window) -> list[Segment]:
    return build_segments(
        gatherer_id,
        ticker,
        window.snapshots.get(ticker, []),
        window.deltas.get(ticker, []),
        window.gaps,
    )


def _continuation(ckpt: Checkpoint, window: _Window) -> Segment:
    """The source's segment from the checkpoint on, as far as the window goes."""
    segment = Segment(
        ckpt.gatherer_id,
        ckpt.conn_id,
        ckpt.ticker,
        ckpt.book.copy(),
        ckpt.segment_start,
        None,
    )
    resnapshot = min(
        (
            s.frame_no
            for s in window.snapshots.get(ckpt.ticker, ())
            if s.conn_id == ckpt.conn_id and s.frame_no > ckpt.frame_no
        ),
        default=None,
    )
    later_conn = any(
        s.conn_id != ckpt.conn_id and s.snapshot_ts > ckpt.received_at
        for s in window.snapshots.get(ckpt.ticker, ())
    )
    segment.deltas = [
        row
        for row in window.deltas.get(ckpt.ticker, ())
        if row.conn_id == ckpt.conn_id
        and row.frame_no > ckpt.frame_no
        and (resnapshot is None or row.frame_no < resnapshot)
    ]
    segment.cut = resnapshot is not None or later_conn
    cut_at_gaps(segment, window.gaps)
    return segment


class ExportState(Protocol):
    """Whether the export works (a :class:`kalshi.dedup.targets.ExportHealth`)."""

    def failed(self, cause: str) -> None: ...

    def succeeded(self) -> None: ...

    def document(self) -> dict[str, Any]: ...


class WindowExporter(Protocol):
    """What :func:`serve_dedup` runs alongside the merge (a
    :class:`kalshi.dedup.export.Exporter`): export every closed window, then the
    ``markets`` table when it changed, raising :class:`ExportError` or
    :class:`DatabaseUnavailable` on failure."""

    @property
    def health(self) -> ExportState: ...

    async def export_closed(self) -> object: ...

    async def export_markets(self) -> object: ...


async def serve_dedup(
    cfg: DedupConfig,
    *,
    exporter: WindowExporter | None = None,
    task_status: trio.TaskStatus[Deduplicator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/health`` and ``/metrics``, merge every ``sync.poll_interval`` and, with an
    ``exporter``, export closed windows alongside, forever.

    Starts (with the :class:`Deduplicator`) once the endpoints are bound. A production
    database that cannot be reached is logged and retried at the next poll, an export that
    fails after its retries at the next export round; other errors propagate. Every
    statement is bounded by ``sync.statement_timeout``/``sync.lock_timeout``. On
    cancellation the database call in flight gets ``shutdown_grace`` seconds to finish;
    past that it is abandoned and the process may exit (PostgreSQL rolls its transaction
    back). Either way nothing half-written stays: every write is one transaction.
    """
    dedup = Deduplicator(cfg)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    serve_endpoints,
                    cfg.http,
                    cfg.metrics,
                    health=partial(_health, dedup, exporter),
                    registry=dedup_metrics(),
                )
            )
            if exporter is not None:
                nursery.start_soon(_export_forever, exporter, float(cfg.sync.poll_interval))
            nursery.start_soon(_grace_on_shutdown, dedup, float(cfg.shutdown_grace))
            task_status.started(dedup)
            while True:
                try:
                    report = await dedup.run_pass()
                except DatabaseUnavailable as exc:  # gatherers' failures are skips, not this
                    log.warning("production database unavailable, retrying: %s", exc)
                else:
                    if report.holes:
                        log.warning(
                            "pass %d: %d holes (order-book and channel)", dedup.passes, report.holes
                        )
                await trio.sleep(float(cfg.sync.poll_interval))
    finally:
        dedup.close()


HOLES_NAMED = 5  # tickers a pass's hole summary names; the rest are in gaps


def _holes_summary(holes: Sequence[str]) -> str:
    """One line for a pass's order-book holes (``holes``: a ticker per hole; outside tester
    pbreak8 F2: a line per market was 250 000 lines per gatherer restart): how many, in
    how many markets, the first :data:`HOLES_NAMED` tickers, and where the full list is."""
    tickers = sorted(set(holes))
    named = ", ".join(tickers[:HOLES_NAMED])
    more = f" and {len(tickers) - HOLES_NAMED} more" if len(tickers) > HOLES_NAMED else ""
    return (
        f"{len(holes)} order-book hole(s) in {len(tickers)} market(s) ({named}{more}): no "
        "gatherer has these stretches, each resumed from a later snapshot; every one is a "
        "production gaps row (kind 'merge_hole'), counted by kalshi_dedup_holes_total"
    )


async def _grace_on_shutdown(dedup: Deduplicator, grace: float) -> None:
    """Wait for the shutdown (this task's cancellation), then give the database calls in
    flight ``shutdown_grace`` to finish."""
    try:
        await trio.sleep_forever()
    finally:
        dedup.stop_within(grace)


def _health(dedup: Deduplicator, exporter: WindowExporter | None) -> dict[str, Any]:
    """The merge's ``/health`` (:meth:`Deduplicator.health`) with, when it exports, the
    ``export`` component (:meth:`ExportHealth.document`): ``degraded`` while it fails
    (not before it answered: unknown is not down)."""
    document = dedup.health()
    if exporter is not None:
        export = exporter.health.document()
        document["export"] = export
        if export["up"] is False:
            document["status"] = "degraded"
    return document


async def _export_forever(exporter: WindowExporter, interval: float) -> None:
    """Export every ``interval`` (at least 1 s). A failure is logged once when the export
    starts failing and once when it works again (:class:`ExportHealth`), not per round."""
    while True:
        try:
            await exporter.export_closed()
            await exporter.export_markets()
        except ExportError as exc:  # the target's failure, recorded by it
            log.debug("export round failed, retrying later: %s", exc)
        except DatabaseUnavailable as exc:
            exporter.health.failed(f"production database: {exc}")
        else:
            exporter.health.succeeded()
        await trio.sleep(max(interval, 1.0))
