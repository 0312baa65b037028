"""What every task of one gatherer shares: config, clocks, the frame processor, the journal,
the writers' channels, and the counters the health document is made of."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import trio
from attrs import Factory, define, field

from kalshi.auth import Signer
from kalshi.config import GathererConfig
from kalshi.gather import metrics
from kalshi.gather.read_ahead import ReadAheadBudget
from kalshi.gather.skew import ClockSkew
from kalshi.journal import JournalWriter
from kalshi.models.rows import GapRow, Row
from kalshi.net import Connector, WallClock, mono_us
from kalshi.pipeline import FrameProcessor, Outcome, RowChannel, RowSink

__all__ = [
    "BACKFILL_MARGIN_US",
    "RESTART_MARGIN_US",
    "Backfill",
    "GatherContext",
    "RowChannel",
    "RowSink",
]

Backfill = tuple[int, int, object]
"""A trade backfill window ``(from_us, to_us, hold key)``."""

BACKFILL_MARGIN_US = 2_000_000
"""REST trade times are whole seconds and the window is widened by one: rows this much older
than the window's start may come."""

RESTART_MARGIN_US = 60_000_000
"""After a restart, trades are fetched from this long before the previous run's last stored
receipt: trades made earlier but received after it (frames arrive seconds late) were lost
with the process too."""

log = logging.getLogger("kalshi.gather")


@define
class GatherContext:
    cfg: GathererConfig
    signer: Signer
    connector: Connector
    processor: FrameProcessor
    journal: JournalWriter | None
    sink: RowSink
    wall_us: WallClock
    mono_us: Callable[[], int] = mono_us
    backfill: trio.MemorySendChannel[Backfill] | None = None
    # Keep the store's ingest watermark at or before a time while a backfill is due.
    hold: Callable[[object, int], None] = lambda key, since_us: None
    release: Callable[[object], None] = lambda key: None
    # Wait until every row handed to the store so far is committed (``Store.committed``);
    # None: rows count as stored once handed over (a sink without a database).
    committed: Callable[[], Awaitable[None]] | None = None
    on_lifecycle: Callable[[Outcome], Awaitable[None]] | None = None
    on_connection_lost: Callable[[], None] | None = None
    gaps: Counter[str] = field(factory=Counter)
    # Why the last market listing failed; None once one succeeds (``/health``: nothing
    # tracked because listing fails is degraded, not ok).
    listing_error: str | None = None
    listed: bool = False  # a market listing has succeeded (before: ``/health`` "starting")
    resnapshots: int = 0
    # Frames refused (invalid, unknown type) logged one by one so far: the first
    # BAD_FRAMES_LOGGED are, the rest counted only (kalshi_decode_errors_total).
    bad_frames_logged: int = 0
    skew: ClockSkew = field(factory=ClockSkew)  # this machine's clock against the exchange's
    # The open ``subscription_refused`` gap of each (channel, ticker): one per market and
    # episode, whichever connection was refused, until the market is subscribed on one.
    refusals: dict[tuple[str, str], GapRow] = field(factory=dict)
    # Gaps whose end is known but not stored yet (a market retired: a sync listener).
    _ended: list[GapRow] = field(factory=list)
    # Trade backfills due, by hold key: the open ``backfill`` gaps the window's trades
    # close (its own first, then earlier runs' it covers).
    backfills: dict[object, list[GapRow]] = field(factory=dict)
    # The bytes every whole-exchange connection's read-ahead shares
    # (``websocket.read_ahead_bytes``); None (0): no read-ahead, one loop a connection.
    read_ahead: ReadAheadBudget | None = field(
        default=Factory(lambda self: _budget(self.cfg), takes_self=True)
    )
    _last_conn_id: int = 0

    def new_conn_id(self) -> int:
        """A connection-session id: µs wall clock, strictly increasing in this process."""
        self._last_conn_id = max(self._last_conn_id + 1, self.wall_us())
        return self._last_conn_id

    @property
    def gatherer_id(self) -> str:
        return self.cfg.gatherer_id

    def count_gaps(self, rows: list[tuple[str, Row]]) -> None:
        """Count the ``gaps`` rows among ``rows`` (health and metrics, by kind)."""
        for _, row in rows:
            # a book_invalid row with its end is the pipeline closing an open one
            if isinstance(row, GapRow) and (row.end_ts is None or row.kind != "book_invalid"):
                self.gaps[row.kind] += 1
                metrics.GAPS.labels(row.kind).inc()

    async def gap(self, row: GapRow) -> None:
        """Store a gap row made outside the pipeline, journaled first as a ``gap`` marker
        holding the row (``kalshi replay`` writes it again); the pipeline takes it as the
        replay does (:meth:`~kalshi.pipeline.FrameProcessor.outside_gap`: an open
        ``book_invalid`` of a live book is closed by its next snapshot)."""
        self.marker(row.conn_id, "gap", row=list(row))
        self.processor.outside_gap(row)
        self.count_gaps([("gaps", row)])
        await self.sink.put("gaps", row)

    async def end_gap(self, row: GapRow, end_ts: int) -> None:
        """Close the open gap ``row`` at ``end_ts`` (µs): its copy with the end, which the
        store writes over the stored row's NULL end (``kalshi.store.insert``); journaled
        as a ``gap`` marker like the open row, so a replay closes it too. Not a new gap:
        not counted."""
        closed = row._replace(end_ts=end_ts)
        self.marker(row.conn_id, "gap", row=list(closed))
        self.processor.outside_gap(closed)
        await self.sink.put("gaps", closed)

    async def backfill_due(
        self,
        key: object,
        since_us: int,
        conn_id: int,
        detail: str,
        inherited: Iterable[GapRow] = (),
    ) -> None:
        """REST trades from ``since_us`` (µs) on are due (a lost trade session, a trade
        ``seq`` gap, the gatherer's own outage): hold the ingest watermark before it, and
        store an open ``backfill`` gap from it, the durable record of the pending window:
        journaled before any later frame and stored like every gap, it stays open until
        the window's trades are committed (:meth:`backfilled`), so a start after a crash
        fetches from it however many runs it took. ``inherited``: earlier runs' open
        ``backfill`` gaps this window covers (closed with it). Once per ``key``."""
        self.hold(key, since_us - BACKFILL_MARGIN_US)
        if key in self.backfills:
            return
        row = GapRow(
            start_ts=since_us,
            end_ts=None,
            gatherer_id=self.gatherer_id,
            conn_id=conn_id,
            sid=None,
            ticker=None,
            kind="backfill",
            expected_seq=None,
            got_seq=None,
            detail=detail,
        )
        self.backfills[key] = [row, *inherited]
        await self.gap(row)

    def backfill_start(self, key: object, default: int) -> int:
        """Where the window of ``key`` starts (µs): its open gap's start, else ``default``."""
        rows = self.backfills.get(key)
        return rows[0].start_ts if rows else default

    async def backfilled(self, key: object, end_us: int) -> None:
        """The trades of ``key``'s window up to ``end_us`` are committed: its open
        ``backfill`` gaps end there, and the watermark hold goes."""
        for row in self.backfills.pop(key, []):
            await self.end_gap(row, max(end_us, row.start_ts))
        self.release(key)

    async def refused(self, channel: str, row: GapRow) -> None:
        """Store the open ``subscription_refused`` gap ``row`` unless its market already
        has one open on ``channel`` (refused by another connection, or again)."""
        assert row.ticker is not None
        key = (channel, row.ticker)
        if key not in self.refusals:
            self.refusals[key] = row
            await self.gap(row)

    async def subscribed(self, channel: str, tickers: Iterable[str]) -> None:
        """``tickers`` are subscribed on ``channel``: their refusal gaps end now."""
        refusals = self.refusals
        if not refusals:
            return
        now = self.wall_us()
        for ticker in tickers:
            row = refusals.pop((channel, ticker), None)
            if row is not None:
                await self.end_gap(row, now)

    def retire(self, tickers: Iterable[str]) -> None:
        """Markets closed or settled: nothing more of them to record, so their refusal
        gaps end now (stored at the next :meth:`flush_ended`)."""
        if not self.refusals:
            return
        now = self.wall_us()
        for ticker in tickers:
            for key in [k for k in self.refusals if k[1] == ticker]:
                self._ended.append(self.refusals.pop(key)._replace(end_ts=now))

    async def flush_ended(self) -> None:
        """Store the gap ends :meth:`retire` recorded."""
        ended, self._ended = self._ended, []
        for row in ended:
            assert row.end_ts is not None
            await self.end_gap(row, row.end_ts)

    async def end_all_refusals(self) -> None:
        """The gatherer stops: every refusal gap ends now (from here its next start's
        ``outage`` gap covers the market)."""
        for market in list(self.refusals):
            self.retire([market[1]])
        await self.flush_ended()

    def marker(self, conn_id: int, kind: str, **detail: object) -> None:
        if self.journal is not None:
            self.journal.record_marker(conn_id, kind, self.wall_us(), self.mono_us(), **detail)


def _budget(cfg: GathererConfig) -> ReadAheadBudget | None:
    limit = int(cfg.websocket.read_ahead_bytes)
    return ReadAheadBudget(limit) if limit else None
