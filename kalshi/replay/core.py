"""Journal records -> rows, through the live pipeline; paced or flat out, filtered.

:class:`Replayer` is pure: it feeds every ``in`` frame of a journal to a
:class:`~kalshi.gather.pipeline.FrameProcessor` (one per gatherer id) with the frame's
recorded ``conn_id``, ``frame_no`` and ``wall_us``, exactly as the live connection task
did, so the rows come out identical, identity keys included. :func:`replay` drives it over
a journal source on Trio, reading in a worker thread and handing rows to a sink.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio
import zstandard
from attrs import define, field, frozen

from kalshi.config import GathererConfig
from kalshi.gather.context import RowSink
from kalshi.gather.pipeline import FrameProcessor, Outcome
from kalshi.journal import JournalProblem, JournalRecord, journal_files
from kalshi.models.rows import Row
from kalshi.store import open_store
from kalshi.store.schema import TABLES

__all__ = [
    "TYPE_CHANNEL",
    "ReplayFilter",
    "ReplayStats",
    "Replayer",
    "RowsSink",
    "count_lines",
    "replay",
    "replay_into_db",
]

# The channel a message travels on, for frames whose subscription was not seen.
TYPE_CHANNEL = {
    "orderbook_snapshot": "orderbook_delta",
    "orderbook_delta": "orderbook_delta",
    "trade": "trade",
    "ticker": "ticker",
    "market_lifecycle_v2": "market_lifecycle_v2",
    "event_lifecycle": "market_lifecycle_v2",
    "event_fee_update": "market_lifecycle_v2",
    "multivariate_market_lifecycle": "multivariate_market_lifecycle",
}
_READ_BATCH = 2000  # journal items read per worker-thread trip
_COUNT_CHUNK = 1 << 20


class RowsSink(Protocol):
    """Where replayed rows go (:class:`kalshi.gather.context.RowSink` is one)."""

    async def put_all(self, rows: list[tuple[str, Row]]) -> None: ...


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
    ``frame_problems`` counts frames the pipeline refused or flagged, by kind."""

    records: int = 0
    frames: int = 0  # 'in' frames processed
    markers: int = 0
    rows: Counter[str] = field(factory=Counter)
    problems: list[JournalProblem] = field(factory=list)
    frame_problems: Counter[str] = field(factory=Counter)
    first_us: int | None = None
    last_us: int | None = None


class Replayer:
    """Feeds journal items through the pipeline; see the module docstring.

    Besides ``in`` frames it gives the pipeline what the live gatherer gives it outside
    ``process``: ``forget_connection`` on a ``disconnect`` marker and ``sent`` for every
    command sent (``delete_markets`` retires books). Those change which books are
    trusted, hence which ``book_invalid`` gaps appear.
    """

    def __init__(self, flt: ReplayFilter | None = None) -> None:
        self.filter = flt or ReplayFilter()
        self.processors: dict[str, FrameProcessor] = {}
        self.stats = ReplayStats()

    def processor(self, gatherer_id: str) -> FrameProcessor:
        proc = self.processors.get(gatherer_id)
        if proc is None:
            proc = self.processors[gatherer_id] = FrameProcessor(gatherer_id)
        return proc

    def feed(self, item: JournalRecord | JournalProblem) -> list[tuple[str, Row]]:
        """Process one item; return the rows the filter keeps, in write order."""
        stats = self.stats
        if isinstance(item, JournalProblem):
            stats.problems.append(item)
            return []
        stats.records += 1
        end = self.filter.end_us
        if end is not None and item.wall_us > end:
            return []
        if item.kind != "frame":
            stats.markers += 1
            if item.kind == "disconnect":
                self.processor(item.gatherer_id).forget_connection(item.conn_id)
            return []
        if item.direction != "in":
            self._sent(item)
            return []
        stats.frames += 1
        if stats.first_us is None:
            stats.first_us = item.wall_us
        stats.last_us = item.wall_us
        proc = self.processor(item.gatherer_id)
        out = proc.process(item.conn_id, item.frame_no, item.wall_us, item.raw)
        if out.problem is not None:
            stats.frame_problems[out.problem] += 1
        if not out.rows:
            return []
        start = self.filter.start_us
        if start is not None and item.wall_us < start:
            return []
        flt = self.filter
        if not (flt.tickers or flt.channels or flt.tables):
            rows = out.rows
        else:
            channel = _channel(proc, item.conn_id, out)
            rows = [(t, r) for t, r in out.rows if flt.wants(t, r, channel)]
        for table, _ in rows:
            stats.rows[table] += 1
        return rows

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
    return list(itertools.islice(items, _READ_BATCH))


async def replay(
    items: Iterable[JournalRecord | JournalProblem],
    sink: RowsSink,
    *,
    replayer: Replayer | None = None,
    speed: float | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Replay ``items`` (e.g. :func:`~kalshi.journal.read_journal`) into ``sink``.

    Reading (file I/O, decompression) runs in a worker thread, a batch at a time; frames
    are processed on the event loop. ``speed`` paces frames by recorded time on Trio's
    clock (``1`` = as recorded, ``10`` = ten times faster; the first frame in the time
    window starts the clock); ``None`` replays flat out. ``on_progress(n)`` is called with
    the number of journal items done after each batch. Raises
    :class:`~kalshi.errors.JournalError` for a source that does not exist. On cancellation
    the rows already handed to ``sink`` stay there; nothing is partially written.
    """
    rep = replayer or Replayer()
    source = iter(items)
    done = 0
    clock_start: float | None = None
    wall_start = 0
    start_us = rep.filter.start_us
    while batch := await trio.to_thread.run_sync(_next_batch, source):
        for item in batch:
            rows = rep.feed(item)
            if speed is not None and isinstance(item, JournalRecord) and item.direction == "in":
                wall = item.wall_us
                if (start_us is None or wall >= start_us) and (
                    rep.filter.end_us is None or wall <= rep.filter.end_us
                ):
                    if clock_start is None:
                        clock_start, wall_start = trio.current_time(), wall
                    await trio.sleep_until(clock_start + (wall - wall_start) / 1e6 / speed)
            if rows:
                await sink.put_all(rows)
        done += len(batch)
        if on_progress is not None:
            on_progress(done)
    return rep.stats


async def replay_into_db(
    items: Iterable[JournalRecord | JournalProblem],
    url: str,
    cfg: GathererConfig,
    *,
    replayer: Replayer | None = None,
    speed: float | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """:func:`replay` into the database at ``url`` (migrated) through the batch writers.

    The writers use ``<spool.dir>/replay`` and ``<spool.dir.dead_letter_dir>/replay`` so a
    replay can run next to a gatherer sharing the config. Rows already stored are skipped
    by their identity keys, so replaying twice adds nothing. Returns when every row is
    written (or spooled, if the database went away). Raises
    :class:`~kalshi.errors.StoreError` as :func:`~kalshi.store.open_store` does.
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
    async with open_store(url, cfg, watermark=False) as store:  # historical rows
        sink = RowSink({table: store.sender(table) for table in TABLES})
        try:
            return await replay(
                items, sink, replayer=replayer, speed=speed, on_progress=on_progress
            )
        finally:
            await sink.aclose()


def count_lines(paths: Iterable[str | Path]) -> int | None:
    """Lines in local journal files (a fast pre-pass for a progress total); ``None`` when a
    source is remote. A damaged zstd tail ends that file's count early."""
    names = [str(p) for p in paths]
    if any(name.startswith("s3://") for name in names):
        return None
    total = 0
    for path in journal_files(names):
        with open(path, "rb") as fh:
            stream: Any = fh
            if path.name.endswith(".zst"):
                stream = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
            try:
                while chunk := stream.read(_COUNT_CHUNK):
                    total += chunk.count(b"\n")
            except zstandard.ZstdError:
                pass
    return total
