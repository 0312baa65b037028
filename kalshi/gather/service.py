"""The gatherer service: the whole Trio task tree of one ``kalshi gather`` process.

::

    Gatherer.run
    ├── open_store            batch writers per table (+ spool), flushed last, shielded
    ├── JournalWriter.run     raw frames to disk (zstd), flushed on cancel
    ├── serve_endpoints       /health, /debug/markets, /metrics
    ├── relist_forever        REST discovery, then a re-list every relist_interval
    ├── _open_markets         initialized markets past their open_time become active
    ├── backfill_trades       REST trades for disconnect / trade-gap windows
    ├── poll_snapshots        REST order books every snapshot_poller.interval
    └── Connection.run × N    one per WebSocket: connect, subscribe, relay, reconnect

See ``docs/architecture.md`` for the channels and their bounds.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import trio

from kalshi.auth import Signer, load_private_key
from kalshi.config import GathererConfig
from kalshi.errors import DatabaseUnavailable, StoreError
from kalshi.gather import metrics
from kalshi.gather.context import RESTART_MARGIN_US, Backfill, GatherContext, RowSink
from kalshi.gather.layout import Layout
from kalshi.gather.recovery import last_frames
from kalshi.gather.registry import MarketRegistry, parse_shard
from kalshi.gather.rest_tasks import backfill_trades, poll_snapshots, relist_forever
from kalshi.http import Endpoints, serve_endpoints
from kalshi.http.views import gatherer_metrics
from kalshi.journal import JournalWriter
from kalshi.models.lifecycle import LifecycleEvent
from kalshi.models.rows import TABLE_COLUMNS, GapRow
from kalshi.net import Connector, RestClient, WallClock, get_transport, system_wall_us
from kalshi.pipeline import FrameProcessor, Outcome
from kalshi.pipeline.outside import MARKETS_PATH
from kalshi.retry import retry
from kalshi.store import Store, migrate, open_store
from kalshi.store.recovery import (
    LastRun,
    Tail,
    TailReader,
    acknowledged,
    last_run,
    open_gaps,
    still_open,
)

__all__ = ["COPIED_STRAIGHT", "Gatherer"]

log = logging.getLogger("kalshi.gather")

_BACKFILL_WINDOWS = 1024
_BACKOFF_START, _BACKOFF_MAX = 0.1, 5.0  # seconds: reading the state, writing the tail
_LIFECYCLE_CHANNELS = ("market_lifecycle_v2", "multivariate_market_lifecycle")
_USER_CONNECTION_LIMIT = 200  # kalshi-api.md §2.6
# The WebSocket tables that carry the volume: a row's key holds its connection and frame
# number, so the gatherer's rows are new by construction and each batch is COPYed straight
# into the table (half the database's work of the staged insert); a batch holding a row
# already stored (a restart's recovery) takes the staged insert (kalshi/store/insert.py).
COPIED_STRAIGHT = frozenset({"orderbook_deltas", "tickers"})
# Young objects allocated between two collections of the youngest generation (CPython's
# default is 700): the receive loop allocates a few objects a row, 20 000 rows a second.
_GC_YOUNG = 50_000
OPEN_CHECK_INTERVAL = 1.0  # seconds: how late a market that opened is seen active
_TOP_MARKETS_EVERY = 10.0  # seconds: /health's top markets scan every market's count


class Gatherer:
    """One gatherer. ``await nursery.start(gatherer.run)`` starts it once markets are listed
    and the endpoints listen; cancel the scope to stop (everything received is flushed)."""

    def __init__(
        self,
        cfg: GathererConfig,
        db_url: str,
        *,
        wall_us: WallClock = system_wall_us,
        connector: Connector | None = None,
        signer: Signer | None = None,
        journal_tail: TailReader | None = None,
        migrated: bool = True,
    ) -> None:
        self.cfg = cfg
        self.db_url = db_url
        # restart recovery's journal reader (``kalshi.replay.tail.journal_tail``); None:
        # the previous run's journal tail is not written again
        self.journal_tail = journal_tail
        # False: the schema could not be migrated at start (the database unreachable): the
        # store migrates before its first write, once the database answers
        self.migrated = migrated
        self.wall_us = wall_us
        self.connector = connector or get_transport(cfg.websocket.transport)
        self.signer = signer or Signer(cfg.kalshi.api_key, load_private_key(cfg.kalshi.api_secret))
        self.shard = parse_shard(cfg.shard)
        ws = cfg.websocket
        total = (
            ws.orderbook_connections
            + ws.trade_connections
            + ws.ticker_connections
            + ws.lifecycle_connections
        )
        if total > _USER_CONNECTION_LIMIT:
            log.warning(
                "%d WebSocket connections configured; the exchange allows %d per user by "
                "default (higher API tiers allow more)",
                total,
                _USER_CONNECTION_LIMIT,
            )
        self.processor = FrameProcessor(
            cfg.gatherer_id, crossed_book_frames=cfg.websocket.crossed_book_frames
        )
        self.registry = MarketRegistry(cfg.gatherer_id, self.shard)
        metrics.follow_registry(self.registry.counts)
        self.store: Store | None = None
        self.journal: JournalWriter | None = None
        self.layout: Layout | None = None
        self.ctx: GatherContext | None = None
        self.endpoints: Endpoints | None = None
        self._started = time.monotonic()
        self._top: list[tuple[str, int]] = []
        self._top_due = -math.inf

    async def run(
        self, *, task_status: trio.TaskStatus[Gatherer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Record until cancelled. The ports are bound first: a taken one raises
        ``OSError`` before anything is written (the store, the journal, an outage row)."""
        async with trio.open_nursery() as served:
            self.endpoints = await served.start(_serve, self.cfg, self.health, self.registry.page)
            await self._record(task_status)
            served.cancel_scope.cancel()  # (not reached: _record runs until cancelled)

    async def _record(self, task_status: trio.TaskStatus[Gatherer]) -> None:
        cfg = self.cfg
        prepare = None if self.migrated else partial(migrate, self.db_url)
        async with open_store(
            self.db_url,
            cfg.store,
            wall_us=self.wall_us,
            copy_new=COPIED_STRAIGHT,
            prepare=prepare,
            # the previous run's journal tail is written before any batch (Store.write_first)
            first=cfg.journal.enabled and self.journal_tail is not None,
        ) as store:
            self.store = store
            sink = RowSink({table: store.sender(table) for table in TABLE_COLUMNS})
            async with trio.open_nursery() as nursery:
                if cfg.journal.enabled:
                    self.journal = JournalWriter(
                        cfg.journal,
                        cfg.gatherer_id,
                        self.wall_us,
                        s3=cfg.s3_export,
                        grace=float(cfg.shutdown_grace),
                    )
                    await nursery.start(self.journal.run)
                    # a row is stored only once its frame is in the journal's file
                    store.follow(self.journal.on_disk)
                send_windows, windows = trio.open_memory_channel[Backfill](_BACKFILL_WINDOWS)
                ctx = GatherContext(
                    cfg=cfg,
                    signer=self.signer,
                    connector=self.connector,
                    processor=self.processor,
                    journal=self.journal,
                    sink=sink,
                    wall_us=self.wall_us,
                    backfill=send_windows,
                    hold=store.hold,
                    release=store.release,
                    committed=store.committed,
                    on_lifecycle=self._on_lifecycle,
                )
                self.ctx = ctx
                layout = Layout(ctx, sharded=self.shard.count > 1)
                self.layout = layout
                await self._resume(layout, nursery)
                self.registry.listeners.append(layout.on_markets)
                rest = RestClient(
                    cfg.kalshi.rest_url,
                    self.signer,
                    rate=cfg.kalshi.rest_rate_limit,
                    timeout=float(cfg.kalshi.request_timeout),
                    wall_us=self.wall_us,
                    on_request=metrics.count_rest,
                    on_failure=self._rest_failed,
                )
                async with rest:
                    for conn in layout.connections:
                        nursery.start_soon(conn.run, name=f"connection {conn.name}")
                    await nursery.start(relist_forever, ctx, rest, self.registry)
                    nursery.start_soon(self._open_markets, ctx)
                    _settle_heap()
                    nursery.start_soon(backfill_trades, ctx, rest, self.registry, windows)
                    if cfg.snapshot_poller.enabled:
                        nursery.start_soon(poll_snapshots, ctx, rest, self.registry, layout)
                    task_status.started(self)
                    # the journal's close waits for the gap ends _stopping journals
                    with self.journal.held() if self.journal is not None else nullcontext():
                        try:
                            await trio.sleep_forever()
                        finally:
                            await self._stopping(ctx)

    async def _stopping(self, ctx: GatherContext) -> None:
        """A clean stop: the refusal and invalid-book gaps still open end now (the next
        start's ``outage`` gap covers the market from the last frame on, and its fresh
        snapshots the books). Bounded: a full gaps channel (the
        database down, the spool refusing) does not hold the shutdown."""
        with trio.move_on_after(1.0, shield=True):
            await ctx.end_all_refusals()
            now = ctx.wall_us()
            # a book still invalid: the next start snapshots it (end_gap takes each out)
            for row in [row for rows in self.processor.invalid.values() for row in rows]:
                await ctx.end_gap(row, max(now, row.start_ts))
            self.processor.invalid.clear()

    async def _read_state(
        self, timeouts: dict[str, float], until: int | None = None
    ) -> tuple[LastRun, Tail, list[GapRow]]:
        """Where the previous run stopped (its database), its journal tail (read, not
        written: :meth:`_write_tail`), and the gaps earlier runs left open
        (``open_gaps``). Raises ``StoreError``."""
        read = partial(
            last_run,
            self.db_url,
            self.cfg.gatherer_id,
            opened_at=self.store.opened_at if self.store is not None else None,
            **timeouts,
        )
        # abandoned when cancelled: a hung database cannot hold a shutdown
        last = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
        tail = Tail()
        if last.ran and self.cfg.journal.enabled and self.journal_tail is not None:
            tail = await self._read_tail(last, timeouts, until)
        read_open = partial(open_gaps, self.db_url, self.cfg.gatherer_id, **timeouts)
        opened = still_open(
            await trio.to_thread.run_sync(read_open, abandon_on_cancel=True), tail.rows
        )
        return last, tail, opened

    async def _end_refusals(self, last: LastRun, tail: Tail, opened: list[GapRow]) -> None:
        """A run killed while markets were refused (or books invalid, or a connection
        stopped) left those gaps open: they end where that run's record ends (this run's
        outage gap covers from there, with fresh subscriptions and snapshots). Gaps this
        run opened itself (read late, the database down at start) stay."""
        ends = [v for v in (*last[:4], tail.end) if v is not None]
        assert self.ctx is not None and self.store is not None
        mine = self.store.opened_at if self.store.opened_at is not None else 2**62
        for row in opened:
            if row.kind != "backfill" and row.start_ts < mine:
                await self.ctx.end_gap(row, max([row.start_ts, *ends]))

    async def _recover_later(self, timeouts: dict[str, float]) -> None:
        """The database was unreachable at start: once it answers, write the previous
        run's journal tail (its records before this run's start; this run's rows wait
        behind it), end the refusal gaps it left open and fetch the trades earlier runs
        left due; until then the watermark stays the previous run's (it says where that
        tail starts)."""
        store, ctx = self.store, self.ctx
        assert store is not None and ctx is not None
        try:
            try:
                last, tail, opened = await retry(
                    partial(self._read_state, timeouts, store.opened_at),
                    transient=(DatabaseUnavailable,),
                    attempts=None,
                    initial=1.0,
                    maximum=_BACKOFF_MAX,
                    on_failure=lambda exc, _: store.unavailable(exc),
                )
            except StoreError as exc:  # reachable, no schema yet: no earlier run
                log.info("database back; no earlier run to recover (%s)", exc)
                store.skip_first()
                return
            await self._write_tail(tail)
            log.info("database back; the previous run's state recovered")
            await self._end_refusals(last, tail, opened)
            pending = [row for row in opened if row.kind == "backfill"]
            if pending and ctx.backfill is not None:
                key = ("pending", pending[0].start_ts)
                since = pending[0].start_ts
                detail = "trades earlier runs left due (read once the database was back)"
                await ctx.backfill_due(key, since, 0, detail, inherited=pending)
                ctx.backfill.send_nowait((since, ctx.wall_us(), key))
        finally:
            store.hold_watermark(False)

    async def _resume(self, layout: Layout, nursery: trio.Nursery) -> None:
        """Restart recovery: the rows of the previous run's journal tail (frames journaled
        whose batch the database never acknowledged) are written before any batch
        (:meth:`_write_tail`, in the background: this run records meanwhile); then where the
        previous run stopped, per channel (its database, or where its journal ends),
        becomes the first connection's starting point on that channel: an ``outage`` gap
        to when it is subscribed again, and the trades of the window fetched over REST.
        Without a database at start, the gatherer starts without it: the journal says
        where the previous run stopped, and the rest is read once the database answers
        (:meth:`_recover_later`)."""
        db = self.cfg.timescaledb
        timeouts = {
            "statement_timeout": float(db.statement_timeout),
            "lock_timeout": float(db.lock_timeout),
        }
        store = self.store
        assert store is not None
        tail = Tail()
        try:
            last, tail, opened = await self._read_state(timeouts)
        except StoreError as exc:
            last = await self._last_journaled(exc)
            opened = []
            if isinstance(exc, DatabaseUnavailable):
                # what the database knows is read (and the journal tail written) once it
                # answers; the watermark stays the previous run's until then
                store.unavailable(exc)
                store.hold_watermark(True)
                nursery.start_soon(self._recover_later, timeouts)
            else:
                store.skip_first()  # unreadable: this run's rows are written as they come
        else:
            # this run's rows wait behind it (they may be REST copies of its trades)
            nursery.start_soon(self._write_tail, tail)
        # Trades earlier runs never got over REST: due still, whatever happened since.
        pending = [row for row in opened if row.kind == "backfill"]
        if not last.ran and not pending:
            return
        await self._end_refusals(last, tail, opened)
        ctx = self.ctx
        assert ctx is not None

        def start(field: str, newest: int | None) -> int | None:
            # The journal's rows are now the store's: every row received before its end
            # (or the watermark) is stored, so a channel's outage starts at its last frame
            # (journaled or stored) when that is earlier, else where that completeness ends.
            if tail.end is None:
                return last.outage_start(newest)
            known = [v for v in (tail.ends.get(field), newest) if v is not None]
            complete = max(tail.end, last.complete_before or tail.end)
            return min(max(known), complete) if known else complete

        lifecycle = start("lifecycle", last.lifecycle)
        starts = {
            "trade": start("trades", last.trades),
            "orderbook_delta": start("orderbook", last.orderbook),
            "ticker": start("tickers", last.tickers),
            "market_lifecycle_v2": lifecycle,
            "multivariate_market_lifecycle": lifecycle,
        }
        if pending and starts["trade"] is None:
            starts["trade"] = pending[0].start_ts
        seen: set[str] = set()
        for conn in layout.connections:
            if conn.channel not in seen:
                seen.add(conn.channel)
                lost_at = conn.resume_from = starts[conn.channel]
                if conn.channel == "trade" and lost_at is not None:
                    # before any row of this run: the window's open gap is its record
                    await ctx.backfill_due(
                        ("disconnect", conn.name, lost_at),
                        min([lost_at - RESTART_MARGIN_US, *(r.start_ts for r in pending)]),
                        0,
                        f"{conn.name}: trades while the gatherer was down",
                        inherited=pending,
                    )
        log.info(
            "previous run stopped; outage from %s; %d trade backfill(s) still due",
            starts,
            len(pending),
        )

    async def _read_tail(
        self,
        last: LastRun,
        timeouts: dict[str, float],
        until: int | None = None,
    ) -> Tail:
        """The previous run's journal tail (``kalshi.replay.tail``; ``until``: where this
        run's own records start, µs): the rows to write again and where its journal ends.
        Raises ``StoreError``."""
        cfg = self.cfg
        acked = partial(
            acknowledged,
            self.db_url,
            cfg.gatherer_id,
            complete_before=last.complete_before,
            statement_timeout=timeouts["statement_timeout"],
            lock_timeout=timeouts["lock_timeout"],
        )
        assert self.journal_tail is not None
        read = partial(
            self.journal_tail,
            Path(cfg.journal.dir),
            cfg.gatherer_id,
            last.complete_before,
            acked,
            until,
        )
        tail: Tail = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
        log.info(
            "journal tail: %d frame(s) not known to be stored, %d row(s) to write again "
            "(%d damaged line(s))",
            tail.frames,
            len(tail.rows),
            tail.problems,
        )
        return tail

    async def _write_tail(self, tail: Tail) -> None:
        """Write the previous run's journal tail before any batch of this run or of the
        spool (``Store.write_first``: where a key has copies from two sources, the first
        received is stored), trying again while the database is unavailable; a clean stop
        meanwhile tries once more within its grace, else the tail stays the journal's (the
        watermark is not recorded before it is written)."""
        store = self.store
        assert store is not None
        if not tail.rows:
            store.skip_first()
            return
        await retry(
            partial(store.write_first, tail.rows),
            transient=(DatabaseUnavailable,),
            attempts=None,
            initial=_BACKOFF_START,
            maximum=_BACKOFF_MAX,
        )
        metrics.count_tail(tail.rows)
        log.info("journal tail: %d row(s) written", len(tail.rows))

    async def _last_journaled(self, exc: StoreError) -> LastRun:
        """Where the previous run stopped by its journal (the database is unreadable)."""
        cfg = self.cfg
        frames: dict[str, int] = {}
        if cfg.journal.enabled:
            frames = await trio.to_thread.run_sync(
                last_frames, Path(cfg.journal.dir), cfg.gatherer_id
            )
        if not frames:
            log.warning("cannot tell where the previous run stopped (no outage recorded): %s", exc)
            return LastRun(None, None, None, None, None)
        log.warning(
            "database unreadable at start (%s); the previous run's end from its journal", exc
        )
        lifecycle = [frames[c] for c in _LIFECYCLE_CHANNELS if c in frames]
        return LastRun(
            frames.get("trade"),
            frames.get("orderbook_delta"),
            frames.get("ticker"),
            max(lifecycle) if lifecycle else None,
            None,
        )

    async def committed(self) -> None:
        """Return once every trade backfill due so far has handed its rows to the store and
        every row handed to it is committed (an acknowledgement, for shutdown and tests:
        frames still arriving make more rows; pause the source first)."""
        store = self.store
        assert store is not None, "the gatherer is not running"
        await store.released()
        await store.committed()

    # --- reactions ----------------------------------------------------------------------

    async def _open_markets(self, ctx: GatherContext) -> None:
        """Every second, the markets whose open_time passed become ``active`` in the
        registry and the ``markets`` table: the exchange sends no event when it opens one
        (kalshi-api.md §5 "Lifecycle"; :meth:`MarketRegistry.open_due`)."""
        while True:
            await trio.sleep(OPEN_CHECK_INTERVAL)
            for row in self.registry.open_due(self.wall_us()):
                await ctx.sink.put("markets", row)

    async def _on_lifecycle(self, out: Outcome) -> None:
        event = out.lifecycle
        if isinstance(event, LifecycleEvent) and self.ctx is not None:
            for row in self.registry.apply(event, self.wall_us()):
                await self.ctx.sink.put("markets", row)
            await self.ctx.flush_ended()  # refusal gaps of a market it retired

    # --- views --------------------------------------------------------------------------

    def _rest_failed(self, endpoint: str, error: BaseException) -> None:
        """Each failed attempt of the market listing, retried ones too, is why it fails
        (``/health`` ``markets.listing_error``) until a listing succeeds."""
        if endpoint == MARKETS_PATH and self.ctx is not None:
            self.ctx.listing_error = str(error)

    def health(self) -> dict[str, Any]:
        """The ``/health`` document (also what the TUI draws)."""
        now = trio.current_time()
        connections = []
        channels: dict[str, dict[str, int]] = {}
        for conn in self.layout.connections if self.layout else []:
            age = None if conn.last_message_at is None else round(now - conn.last_message_at, 3)
            connections.append(
                {
                    "name": conn.name,
                    "channel": conn.channel,
                    "state": conn.state,
                    "markets": len(conn.desired) if conn.scoped else None,
                    "subscribed": len(conn.subscribed) if conn.scoped else None,
                    "refused": len(conn.refused),
                    "last_message_age_s": age,
                    "reconnects": conn.reconnects,
                    "messages": conn.messages,
                    "read_ahead": conn.read_ahead,
                    "error": conn.last_error,
                }
            )
            entry = channels.setdefault(conn.channel, {"messages": 0, "bytes": 0})
            entry["messages"] += conn.messages
            entry["bytes"] += conn.bytes
        tables: dict[str, Any] = {}
        db: dict[str, Any] = {"state": "unknown"}
        spool: dict[str, Any] = {"state": "unknown"}
        stored_ok = True
        if self.store is not None:
            stats = self.store.stats()
            state = {True: "up", False: "down", None: "unknown"}[stats.db_up]
            db = {"state": state, "error": stats.db_error}
            spool = {
                "state": "ok" if stats.spool_ok else "refusing",
                "error": stats.spool_error,
                # the tables whose writer takes no rows (their channels fill, then the
                # connections handing them rows wait): docs/operations.md
                "reading_paused": bool(stats.paused),
                "paused_tables": list(stats.paused),
                "memory_rows": stats.memory_rows,
            }
            # unknown (no operation answered yet, starting) is not up, but not down either
            stored_ok = stats.db_up is not False and stats.spool_ok
            for name, table in stats.tables.items():
                tables[name] = {
                    "queue": table.queue_rows,
                    "rows_written": table.rows_written,
                    "rows_duplicate": table.rows_duplicate,
                    "rows_updated": table.rows_updated,
                    "spool_rows": table.spool_rows,
                    "dead_letters": table.dead_letters,
                }
        counts = self.processor.counts
        ctx = self.ctx
        # a connection without markets to carry (a small shard) is idle, not unhealthy
        live = sum(1 for c in connections if c["state"] in ("live", "idle") and not c["refused"])
        ok = bool(connections) and live == len(connections) and stored_ok
        listing_error = ctx.listing_error if ctx else None
        listed = ctx is not None and ctx.listed
        status = "ok" if ok else "degraded"
        if not self.registry.markets and listing_error is not None:
            status = "degraded"  # nothing to record: the market listing fails (429, 5xx, down)
        elif not self.registry.markets and not listed and stored_ok:
            # nothing tracked, and no listing has answered yet nor failed: connections that
            # are not live yet are part of starting; a database or disk down is not
            status = "starting"
        document: dict[str, Any] = {
            "status": status,
            "gatherer_id": self.cfg.gatherer_id,
            "shard": self.cfg.shard,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "connections": connections,
            "channels": channels,
            "tables": tables,
            "db": db,
            "spool": spool,
            "markets": {
                "tracked": len(self.registry.markets),
                "live": len(self.registry.live),
                "books": len(self.processor.books),
                "stale": len(self.processor.stale),
                "listing_error": listing_error,
            },
            "gaps": sum(ctx.gaps.values()) if ctx else 0,
            "gap_kinds": dict(ctx.gaps) if ctx else {},
            "resnapshots": ctx.resnapshots if ctx else 0,
            "clock_offset_s": ctx.skew.offset_s if ctx else None,
            "decode_errors": counts["invalid"] + counts["unknown_type"],
            "duplicates": counts["duplicate"],
            "crossed_book_frames": counts["crossed_book_frames"],
            "journal": None,
            "read_ahead": None,
            "top_markets": self._top_markets(),
        }
        budget = ctx.read_ahead if ctx else None
        if budget is not None:  # the whole-exchange sockets' shared read-ahead (bytes)
            document["read_ahead"] = {
                "bytes": budget.held,
                "peak_bytes": budget.peak,
                "limit_bytes": budget.limit,
            }
        if self.journal is not None:
            document["journal"] = {
                "records": self.journal.records,
                "bytes": self.journal.bytes_written,
                "pressure": self.journal.pressure,
                "disk": "ok" if self.journal.disk_ok else "refusing",
                "upload_backlog": self.journal.upload_backlog,
                "error": self.journal.disk_error,
            }
            if not self.journal.disk_ok:
                document["status"] = "degraded"
        return document

    def _top_markets(self, count: int = 10) -> list[dict[str, Any]]:
        """The ``count`` markets with the most messages: counts refreshed at most every
        ``_TOP_MARKETS_EVERY`` seconds (a scan of every market: ~40 ms at 250 000, which a
        monitor polling /health every second would take from the receive loop), books now."""
        now = time.monotonic()
        if now >= self._top_due:
            self._top = self.processor.market_messages.most_common(count)
            self._top_due = now + _TOP_MARKETS_EVERY
        top = []
        for ticker, messages in self._top:
            book = self.processor.books.get(ticker)
            bid = book.best_yes_bid() if book else None
            ask = book.best_yes_ask() if book else None
            top.append(
                {
                    "ticker": ticker,
                    "messages": messages,
                    "best_bid": bid[0] if bid else None,
                    "best_ask": ask[0] if ask else None,
                }
            )
        return top


def _settle_heap() -> None:
    """Once the markets are listed: what exists now (the registry of every market: millions
    of objects at 250 000 markets) lives as long as the process, so it moves to the
    collector's permanent generation (``gc.freeze``), and the youngest generation is
    collected every ``_GC_YOUNG`` allocations. Otherwise each full collection walks the
    whole registry again: at 20 000 msgs/s the collector held the GIL for half the
    gatherer's time (issue 20, py-spy). Cyclic garbage made later is still collected."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG, older, oldest)


async def _serve(
    cfg: GathererConfig,
    health: Callable[[], dict[str, Any]],
    markets: Any,
    *,
    task_status: trio.TaskStatus[Endpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_endpoints(
        cfg.http,
        cfg.metrics,
        health=health,
        debug_markets=markets,
        registry=gatherer_metrics(),
        task_status=task_status,
    )
