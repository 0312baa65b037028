"""Journal records -> rows, through the live pipeline; paced or flat out, filtered.

:class:`Replayer` is pure: it feeds every ``in`` frame of a journal to a
:class:`~kalshi.pipeline.FrameProcessor` (one per gatherer id) with the frame's
recorded ``conn_id``, ``frame_no`` and ``wall_us``, exactly as the live connection task
did, so the rows come out identical, identity keys included. :func:`replay` drives it over
a journal source on Trio, reading in a worker thread and handing rows to a sink.
"""

from __future__ import annotations

import gc
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import attrs
import trio
from attrs import define, field, frozen

from kalshi.config import StoreConfig
from kalshi.errors import ConfigError, DecodeError
from kalshi.journal import JournalProblem, JournalRecord
from kalshi.journal.format import FRAME, REST
from kalshi.models.rows import GapRow, Row
from kalshi.pipeline import TYPE_CHANNEL, FrameProcessor, Outcome, Sink
from kalshi.pipeline.outside import MARKETS_PATH, made_outside
from kalshi.replay.continuity import Continuity
from kalshi.replay.source import SeqCheck, decompressed, source_files
from kalshi.replay.writer_process import (
    StoreSink,
    Writers,
    drain_store,
    replay_through_process,
    store_counts,
)
from kalshi.store import open_store

__all__ = [
    "BAD_FRAMES_LISTED",
    "READ_BATCH",
    "TYPE_CHANNEL",
    "ReplayFilter",
    "ReplayStats",
    "Replayer",
    "count_lines",
    "replay",
    "replay_into_db",
]

log = logging.getLogger("kalshi.replay")

BAD_FRAMES_LISTED = 10  # refused frames located one by one; the rest are counted
_BAD = frozenset({"invalid", "unknown_type"})
_TABLE = itemgetter(0)  # a (table, row) pair's table
READ_BATCH = 200  # journal items read (and processed) at a time: small batches stay in cache


@frozen
class ReplayFilter:
    """Which rows to keep. Empty sets keep everything; times are µs of local receive time
    (the journal's ``wall_us``), both ends inclusive.

    Filters select output only: every frame up to ``end_us`` is still processed, because
    sequence numbers and books span markets and channels.
    """

    tickers: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    tables: frozenset[str] = frozenset()
    start_us: int | None = None
    end_us: int | None = None

    def wants(self, table: str, row: Row, channel: str | None) -> bool:
        if self.tables and table not in self.tables:
            return False
        if self.channels and channel not in self.channels:
            return False
        if self.tickers:
            ticker = getattr(row, "ticker", None)
            # A gap without a ticker concerns a whole subscription: kept.
            if ticker is not None and ticker not in self.tickers:
                return False
        return True


@define
class ReplayStats:
    """What a replay saw. ``problems`` are damaged journal lines (file, line, reason);
    ``frame_problems`` counts frames the pipeline refused or flagged, by kind;
    ``bad_frames`` locates the first :data:`BAD_FRAMES_LISTED` frames it refused (not
    JSON of a known shape: ``invalid``, ``unknown_type``), one line each: where (a
    capture's ``file:line``, a journal's ``gatherer G conn C frame N``), the kind and
    what is wrong (the field and why); the rest are counted only (issue F8)."""

    records: int = 0
    frames: int = 0  # 'in' frames processed
    markers: int = 0
    rows: Counter[str] = field(factory=Counter)
    problems: list[JournalProblem] = field(factory=list)
    frame_problems: Counter[str] = field(factory=Counter)
    bad_frames: list[str] = field(factory=list)
    first_us: int | None = None
    last_us: int | None = None
    # Into a database: per table, rows the database acknowledged as new (``written``: on a
    # fresh database, the table's count), as already stored (``duplicate``; markets: not
    # newer than the stored version), as replacing a stored market (``updated``), and rows
    # not written (dead-lettered, or left in the spool when the database went away). Each
    # row handed to the store is in exactly one of the four.
    written: Counter[str] = field(factory=Counter)
    duplicate: Counter[str] = field(factory=Counter)
    updated: Counter[str] = field(factory=Counter)
    left: Counter[str] = field(factory=Counter)
    # Stopped before the journal's end (``stop`` was set: Ctrl-C, SIGTERM): every row made
    # until then was handed to the sink, the journal after ``records`` was not read.
    stopped: bool = False


class Replayer:
    """Feeds journal items through the pipeline; see the module docstring.

    Besides ``in`` frames it gives the pipeline what the live gatherer gives it outside
    ``process``: ``forget_connection`` on a ``disconnect`` marker, ``sent`` for every
    command sent (``delete_markets`` retires books) and ``outside_gap`` for every ``gap``
    marker (a live book that differed from REST is stale until its next snapshot, which
    ends its ``book_invalid`` gap). Those change which books are trusted, hence which
    ``book_invalid`` gaps appear and end.

    The sequence rule of each connection (``docs/replay.md``, "Captures"): ``seq_check``
    ``auto`` takes a capture session's rule from its ``connect`` marker and keeps the live
    (contiguous) rule for our journal; ``contiguous`` or ``filtered`` applies to every
    connection. :attr:`continuity` says per session and market what the frames prove.
    """

    def __init__(self, flt: ReplayFilter | None = None, seq_check: SeqCheck = "auto") -> None:
        self.filter = flt or ReplayFilter()
        self.seq_check = seq_check
        self.processors: dict[str, FrameProcessor] = {}
        self.stats = ReplayStats()
        self.continuity = Continuity()
        self._rules: dict[tuple[str, int], str] = {}
        # per gatherer, its market registry, from the first journaled /markets page on
        self.registries: dict[str, Any] = {}
        # per gatherer, the earliest open_time (µs) of a market its registry holds as
        # initialized: the replayed time passing it opens the market (:meth:`_opened`)
        self._opens: dict[str, int] = {}

    def processor(self, gatherer_id: str) -> FrameProcessor:
        proc = self.processors.get(gatherer_id)
        if proc is None:
            proc = self.processors[gatherer_id] = FrameProcessor(gatherer_id)
        return proc

    def feed(self, item: JournalRecord | JournalProblem) -> list[tuple[str, Row]]:
        """Process one item; return the rows the filter keeps, in write order."""
        rows = self._feed(item)
        if rows:  # a frame's one or two rows: a loop costs less than Counter.update
            counts = self.stats.rows
            for table, _ in rows:
                counts[table] += 1
        return rows

    def _feed(self, item: JournalRecord | JournalProblem) -> list[tuple[str, Row]]:
        """:meth:`feed` without counting the rows kept (its callers count them)."""
        stats = self.stats
        if isinstance(item, JournalProblem):
            stats.problems.append(item)
            return []
        stats.records += 1
        flt = self.filter
        wall = item.wall_us
        if flt.end_us is not None and wall > flt.end_us:
            return []
        due = self._opens.get(item.gatherer_id)
        if due is not None and wall >= due:
            opened = self._opened(item.gatherer_id, wall)
            return opened + self._item(item, wall) if opened else self._item(item, wall)
        return self._item(item, wall)

    def _item(self, item: JournalRecord, wall: int) -> list[tuple[str, Row]]:
        """:meth:`_feed` of a record within the time window, its time's openings done."""
        stats = self.stats
        flt = self.filter
        if item.kind == REST or (item.kind == "gap" and "row" in item.detail):
            stats.markers += 1
            try:
                made = self._listed(item) if _listing(item) else made_outside(item)
            except (DecodeError, ConfigError, ValueError, TypeError) as exc:
                stats.frame_problems["invalid_record"] += 1
                log.warning("%s record at %d: %s", item.kind, wall, exc)
                return []
            if item.kind == "gap":  # a stretch the gatherer knew it did not record
                proc = self.processor(item.gatherer_id)
                for _, row in made:
                    if isinstance(row, GapRow):
                        self.continuity.gap(row)
                        # as live (GatherContext.gap): a REST mismatch's open book_invalid
                        # makes the book stale until its next snapshot, which closes it
                        proc.outside_gap(row)
            return self._kept(wall, made)
        if item.kind != "frame":
            stats.markers += 1
            if item.kind == "disconnect":
                self.processor(item.gatherer_id).forget_connection(item.conn_id)
            elif item.kind == "connect":
                self._connect(item)
            elif item.kind == "forget":
                self._forget(item)
                return []
            else:
                return []
            self.continuity.marker(item, self._rules.get((item.gatherer_id, item.conn_id), ""))
            return []
        if item.direction != "in":
            self._sent(item)
            return []
        stats.frames += 1
        if stats.first_us is None:
            stats.first_us = wall
        stats.last_us = wall
        proc = self.processors.get(item.gatherer_id) or self.processor(item.gatherer_id)
        out = proc.process(item.conn_id, item.frame_no, wall, item.raw)
        if out.lifecycle is not None and item.gatherer_id in self.registries:
            self._lifecycle(item.gatherer_id, out, wall)
        self.continuity.frame(item, out)
        if out.problem is not None:
            stats.frame_problems[out.problem] += 1
            if out.problem in _BAD:
                self._refused(item, out)
        rows = out.rows
        if not rows:
            return rows
        if flt.start_us is not None and wall < flt.start_us:
            return []
        if flt.tickers or flt.channels or flt.tables:
            channel = _channel(proc, item.conn_id, out)
            rows = [(t, r) for t, r in rows if flt.wants(t, r, channel)]
        return rows

    def _listed(self, item: JournalRecord) -> list[tuple[str, Row]]:
        """A journaled ``/markets`` page: the ``markets`` rows the gatherer's registry made
        of it (one registry per gatherer, of the shard the record names)."""
        from kalshi.pipeline.registry import MarketRegistry, parse_shard
        from kalshi.wire.rest import decode_markets_page

        registry = self.registries.get(item.gatherer_id)
        if registry is None:
            shard = parse_shard(str(item.detail.get("shard", "0/1")))
            registry = self.registries[item.gatherer_id] = MarketRegistry(item.gatherer_id, shard)
        markets, _ = decode_markets_page(item.raw)
        rows = registry.upsert(markets, item.wall_us)
        self._reschedule(item.gatherer_id)
        return [("markets", row) for row in rows]

    def _lifecycle(self, gatherer_id: str, out: Outcome, wall: int) -> None:
        """A lifecycle event moves the registry as live (``Gatherer._on_lifecycle``)."""
        from kalshi.models.lifecycle import LifecycleEvent

        if isinstance(out.lifecycle, LifecycleEvent):
            rows = self.registries[gatherer_id].apply(out.lifecycle, wall)
            out.rows.extend(("markets", row) for row in rows)
            self._reschedule(gatherer_id)

    def _forget(self, item: JournalRecord) -> None:
        """A ``forget`` marker: a complete listing let the live registry forget the markets
        held as ``finalized`` since before ``detail.before_us`` (µs); this gatherer's does
        the same (:meth:`~kalshi.pipeline.registry.MarketRegistry.forget`, the same
        function), so a long replay's registry stays as bounded as live's. Their
        ``markets`` rows stay. A marker without an integer ``before_us`` is counted
        (``invalid_record``) and skipped."""
        before = item.detail.get("before_us")
        if type(before) is not int:
            self.stats.frame_problems["invalid_record"] += 1
            log.warning("forget marker at %d: before_us %r is not an integer", item.wall_us, before)
            return
        registry = self.registries.get(item.gatherer_id)
        if registry is not None:
            registry.forget(before)

    def _opened(self, gatherer_id: str, wall: int) -> list[tuple[str, Row]]:
        """The replayed time of ``gatherer_id`` reached ``wall`` (µs, a record's recorded
        time): its registry's ``initialized`` markets whose open_time passed become
        ``active``, as live every second (``Gatherer._open_markets``, the same
        :meth:`~kalshi.pipeline.registry.MarketRegistry.open_due`; kalshi-api.md §5
        "Lifecycle"). Returns their ``markets`` rows the filter keeps."""
        rows = self.registries[gatherer_id].open_due(wall)
        self._reschedule(gatherer_id)
        return self._kept(wall, [("markets", row) for row in rows])

    def _reschedule(self, gatherer_id: str) -> None:
        """:attr:`_opens` of ``gatherer_id`` after its registry changed."""
        due = min(self.registries[gatherer_id].unopened.values(), default=None)
        if due is None:
            self._opens.pop(gatherer_id, None)
        else:
            self._opens[gatherer_id] = due

    def _kept(self, wall: int, rows: list[tuple[str, Row]]) -> list[tuple[str, Row]]:
        """The filter's choice of rows made outside the pipeline (REST, the gatherer's gaps)."""
        flt = self.filter
        if not rows or (flt.start_us is not None and wall < flt.start_us):
            return []
        if flt.tickers or flt.tables or flt.channels:
            rows = [(t, r) for t, r in rows if flt.wants(t, r, "trade" if t == "trades" else None)]
        return rows

    def feed_all(self, items: Iterable[JournalRecord | JournalProblem]) -> list[tuple[str, Row]]:
        """:meth:`feed` of each item; the rows kept, in write order.

        Without a filter, an ``in`` frame (nearly every item) takes :meth:`_feed`'s frame
        path written out here, its state in locals for the batch, and the rows are counted
        once for the batch: the same rows, stats and continuity as :meth:`feed` of each
        item (tests/replay/test_replayer.py), for less Python work a frame."""
        feed = self._feed
        out: list[tuple[str, Row]] = []
        flt = self.filter
        if (
            flt.tickers
            or flt.channels
            or flt.tables
            or flt.start_us is not None
            or flt.end_us is not None
        ):
            for item in items:
                rows = feed(item)
                if rows:
                    out += rows
        else:
            self._feed_plain(items, out)
        if out:
            self.stats.rows.update(map(_TABLE, out))
        return out

    def _feed_plain(
        self, items: Iterable[JournalRecord | JournalProblem], out: list[tuple[str, Row]]
    ) -> None:
        """:meth:`feed_all` without a filter: rows onto ``out``, not counted. The frames'
        counts (stats, continuity) are added once per run of ``in`` frames."""
        stats, processors, registries = self.stats, self.processors, self.registries
        problems, opens = stats.frame_problems, self._opens
        run: list[JournalRecord] = []  # the run of `in` frames, and their outcomes
        done_run: list[Outcome] = []
        for item in items:
            if type(item) is not JournalRecord or item.kind != FRAME or item.direction != "in":
                if run:
                    self._counted(run, done_run)
                    run, done_run = [], []
                rows = self._feed(item)
                if rows:
                    out += rows
                continue
            run.append(item)
            gatherer_id = item.gatherer_id
            if opens:
                due = opens.get(gatherer_id)
                if due is not None and item.wall_us >= due:
                    out += self._opened(gatherer_id, item.wall_us)
            proc = processors.get(gatherer_id) or self.processor(gatherer_id)
            done = proc.process(item.conn_id, item.frame_no, item.wall_us, item.raw)
            done_run.append(done)
            if done.lifecycle is not None and gatherer_id in registries:
                self._lifecycle(gatherer_id, done, item.wall_us)
            if done.problem is not None:
                problems[done.problem] += 1
                if done.problem in _BAD:
                    self._refused(item, done)
            if done.rows:
                out += done.rows
        if run:
            self._counted(run, done_run)

    def _counted(self, run: list[JournalRecord], outcomes: list[Outcome]) -> None:
        """A run of ``in`` frames processed: counted in the stats and the continuity."""
        stats = self.stats
        stats.records += len(run)
        stats.frames += len(run)
        if stats.first_us is None:
            stats.first_us = run[0].wall_us
        stats.last_us = run[-1].wall_us
        self.continuity.frames(run, outcomes)

    def _refused(self, item: JournalRecord, out: Outcome) -> None:
        """A frame the pipeline refused: located in ``stats.bad_frames`` (the first
        :data:`BAD_FRAMES_LISTED`), a capture's by ``file:line``, a journal's by its
        gatherer, connection and frame number."""
        bad = self.stats.bad_frames
        if len(bad) < BAD_FRAMES_LISTED:
            where = item.source or (
                f"gatherer {item.gatherer_id} conn {item.conn_id} frame {item.frame_no}"
            )
            bad.append(f"{where}: {out.problem}: {out.detail}")

    def _connect(self, item: JournalRecord) -> None:
        """A connection starts: its sequence rule (a capture's comes in the marker)."""
        captured = item.detail.get("seq_check")
        implicit = isinstance(captured, str)
        rule = self.seq_check
        if rule == "auto":
            rule = captured if captured in ("contiguous", "filtered") else "contiguous"
        self._rules[(item.gatherer_id, item.conn_id)] = rule
        proc = self.processor(item.gatherer_id)
        before = item.detail.get("continues")
        if isinstance(before, int) and (item.gatherer_id, before) in self._rules:
            # A capture session read on from its next file: a new connection identity,
            # the same subscriptions, seq and books (docs/replay.md, "Identity of a
            # capture's rows").
            proc.continue_connection(before, item.conn_id)
        proc.seq_rule(item.conn_id, filtered=rule == "filtered", implicit=implicit)
        if implicit and item.gatherer_id not in self.registries:
            # A capture has no listing: its lifecycle frames alone make its ``markets``
            # rows, through a registry of every market, as live a ``created`` event does.
            from kalshi.pipeline.registry import MarketRegistry

            self.registries[item.gatherer_id] = MarketRegistry(item.gatherer_id)

    def _sent(self, item: JournalRecord) -> None:
        """A command the gatherer sent: the pipeline reacts as it did live."""
        self.processor(item.gatherer_id).sent(item.raw, item.conn_id)


def _channel(proc: FrameProcessor, conn_id: int, out: Outcome) -> str | None:
    msg = out.message
    if msg is None:
        return None
    if msg.sid is not None:
        channel = proc.subscription(conn_id, msg.sid)
        if channel is not None:
            return channel
    return TYPE_CHANNEL.get(msg.type)


def _next_batch(items: Iterator[JournalRecord | JournalProblem]) -> list[Any]:
    return list(itertools.islice(items, READ_BATCH))


async def replay(
    items: Iterable[JournalRecord | JournalProblem],
    sink: Sink,
    *,
    replayer: Replayer | None = None,
    speed: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    blocking: bool = True,
    stop: trio.Event | None = None,
) -> ReplayStats:
    """Replay ``items`` (e.g. :func:`~kalshi.journal.read_journal`) into ``sink``.

    ``items`` are read a batch at a time: in a worker thread when reading them may block
    (``blocking``: stdin, objects fetched from S3), else on the event loop between batches
    (local files: a thread's hand-over costs more than reading a batch). Frames are
    processed on the event loop, flat out a batch at a time (its rows handed to ``sink`` at
    once). ``speed`` paces frames by recorded time on Trio's clock (``1`` = as recorded,
    ``10`` = ten times faster; the first frame in the time window starts the clock);
    ``None`` replays flat out. ``on_progress(n)`` is called with the number of journal
    items done after each batch. Raises :class:`~kalshi.errors.JournalError` for a source
    that does not exist. On cancellation the rows already handed to ``sink`` stay there;
    nothing is partially written. ``stop`` set (a signal): the replay ends at the next batch
    (flat out) or frame (paced), every row made so far handed to ``sink``, with
    ``stats.stopped``.
    """
    rep = replayer or Replayer()
    source = iter(items)
    done = 0
    clock_start: float | None = None
    wall_start = 0
    start_us = rep.filter.start_us
    while True:
        if stop is not None and stop.is_set():
            rep.stats.stopped = True
            break
        if blocking:
            batch = await trio.to_thread.run_sync(_next_batch, source)
        else:
            await trio.lowlevel.checkpoint()  # the writers' tasks run between batches
            batch = _next_batch(source)
        if not batch:
            break
        if speed is None:  # flat out: one hand-over per batch
            rows = rep.feed_all(batch)
            if rows:
                await sink.put_all(rows)
        else:
            for item in batch:
                rows = rep.feed(item)
                if isinstance(item, JournalRecord) and item.direction == "in":
                    wall = item.wall_us
                    if (start_us is None or wall >= start_us) and (
                        rep.filter.end_us is None or wall <= rep.filter.end_us
                    ):
                        if clock_start is None:
                            clock_start, wall_start = trio.current_time(), wall
                        due = clock_start + (wall - wall_start) / 1e6 / speed
                        if stop is None:
                            await trio.sleep_until(due)
                        else:
                            with trio.move_on_at(due):
                                await stop.wait()
                if rows:
                    await sink.put_all(rows)
                if stop is not None and stop.is_set():
                    break
        done += len(batch)
        if on_progress is not None:
            on_progress(done)
    return rep.stats


async def replay_into_db(
    items: Iterable[JournalRecord | JournalProblem],
    url: str,
    cfg: StoreConfig,
    *,
    replayer: Replayer | None = None,
    speed: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    blocking: bool = True,
    copy_new: bool = True,
    writers: Writers = "inline",
    stop: trio.Event | None = None,
) -> ReplayStats:
    """:func:`replay` into the database at ``url`` (migrated) through the batch writers,
    configured by ``cfg`` (a gatherer config's :attr:`~kalshi.config.GathererConfig.store`).

    The writers use ``<spool.dir>/replay`` and ``<spool.dir.dead_letter_dir>/replay`` so a
    replay can run next to a gatherer sharing the config. Rows already stored are skipped
    by their identity keys, so replaying twice adds nothing. Returns once every row is
    committed and the spool drained (``stats.written`` / ``duplicate`` / ``updated``), or
    once the database has acknowledged nothing for ``cfg.shutdown_grace`` seconds; rows
    still unwritten then are counted in ``stats.left`` (they stay in the spool, which
    belongs to this database only). Raises :class:`~kalshi.errors.StoreError` as
    :func:`~kalshi.store.open_store` does (e.g. the spool holds another database's rows).
    ``blocking``: as for :func:`replay`. ``copy_new``: batches are COPYed straight into
    their tables first (see :func:`~kalshi.store.open_store`); ``False`` stages every batch
    as the live gatherer does (the same rows end up stored). ``writers``: ``"inline"``
    runs the store on this Trio loop; ``"process"`` runs the same store in a second
    process fed over a pipe (:mod:`kalshi.replay.writer_process`), with the same rows and
    counts; a writer process that dies raises :class:`~kalshi.errors.StoreError`.
    ``stop`` (set on Ctrl-C / SIGTERM): reading ends (:func:`replay`), and the rows made
    so far are written and counted as at the journal's end.
    """
    spool = cfg.spool
    cfg = attrs.evolve(
        cfg,
        spool=attrs.evolve(
            spool,
            dir=str(Path(spool.dir) / "replay"),
            dead_letter_dir=str(Path(spool.dead_letter_dir) / "replay"),
        ),
    )
    rep = replayer or Replayer()

    async def run(sink: Sink) -> ReplayStats:
        return await replay(
            items,
            sink,
            replayer=rep,
            speed=speed,
            on_progress=on_progress,
            blocking=blocking,
            stop=stop,
        )

    # What exists now (modules, functions, types, the caller's objects) outlives the replay:
    # out of the garbage collector's reach while it runs, else every full pass the rows'
    # allocations start walks it again (0.4-0.8 µs a frame of this process,
    # docs/performance.md). A caller's own frozen objects stay frozen.
    gc.collect()
    thaw = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        if writers == "process":
            counts = await replay_through_process(
                run, url, cfg, copy_new=copy_new, eager=speed is not None
            )
            stats = rep.stats
        else:
            # Historical rows, most of them new: COPY straight into the tables first.
            async with open_store(url, cfg, watermark=False, copy_new=copy_new) as store:
                sink = StoreSink(store)
                try:
                    stats = await run(sink)
                finally:
                    await sink.aclose()
                await drain_store(store, float(cfg.shutdown_grace))
            counts = store_counts(store)
    finally:
        if thaw:
            gc.unfreeze()
    for name, counter in (
        ("written", stats.written),
        ("duplicate", stats.duplicate),
        ("updated", stats.updated),
        ("left", stats.left),
    ):
        for table, n in counts[name].items():
            counter[table] = n
    stats.written, stats.duplicate = +stats.written, +stats.duplicate
    stats.updated, stats.left = +stats.updated, +stats.left
    return stats


def count_lines(paths: Iterable[str | Path]) -> int | None:
    """Lines in local files, decompressed (a fast pre-pass for a progress total); ``None``
    when a source is remote or stdin. A damaged compressed tail ends that file's count."""
    names = [str(p) for p in paths]
    if any(name.startswith("s3://") or name == "-" for name in names):
        return None
    total = 0
    for path in source_files(names):
        torn: list[str] = []
        with open(path, "rb") as fh:
            for chunk in decompressed(fh, torn):
                total += chunk[0].count(b"\n") if chunk else 0
    return total


def _listing(item: JournalRecord) -> bool:
    return item.kind == REST and item.detail.get("path") == MARKETS_PATH
