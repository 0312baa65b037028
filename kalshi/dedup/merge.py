"""Pure: merge the order-book streams of several gatherers into one, per market.

The production stream of a market is a sequence numbered from 1 (the ``seq`` column of the
production ``orderbook_deltas`` and ``orderbook_snapshots``): it starts with a snapshot and
continues with deltas; after a hole (a stretch no gatherer recorded) it resumes with another
snapshot. Rebuilding a book is "reset at each snapshot, add each delta, in ``seq`` order".

The merge follows one *source* segment while it lasts. When it ends (a gap, a resnapshot,
its gatherer is down) or stops short of what another gatherer has, it looks for a segment
whose book, at a point no later than the last merged delta, equals the merged book, and
continues there (a *switch*). Nothing matches: a snapshot that ``follows`` on the source's
own connection (the exchange restated the book with no gap between, e.g. the empty book of
a closing market) continues the stream; else the earliest later snapshot restarts the
stream and the uncovered stretch becomes a ``merge_hole`` row in ``gaps``.

Deltas carry no exchange id and coarse times, so "the same point" means "same book, same
or earlier exchange time"; of several such points the latest is taken, so a delta is never
merged twice (a cycle of deltas that cancel within one exchange millisecond at a switch
could be dropped: the book is exact either way).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from attrs import define, field, frozen

from kalshi.book import OrderBook
from kalshi.dedup.segments import Segment, apply_row, book_from_snapshot
from kalshi.errors import BookError
from kalshi.models.rows import DeltaRow, GapRow, SnapshotRow

__all__ = [
    "DEDUP_ID",
    "HOLE_KIND",
    "Checkpoint",
    "MarketMerge",
    "Point",
    "merge_market",
    "point_ts",
]

HOLE_KIND = "merge_hole"
DEDUP_ID = "dedup"


@frozen
class Checkpoint:
    """Where a market's production stream ends (durable: ``dedup_books``)."""

    ticker: str
    seq: int  # last stream seq used
    gatherer_id: str  # source of the last merged row
    conn_id: int
    frame_no: int
    received_at: int  # of the last merged row, source clock
    segment_start: int  # received_at where the source segment started
    exchange_ts: int  # the newest exchange time merged (times run backwards at times)
    book: OrderBook = field(eq=False)
    waiting: bool  # the source ended and nothing continues it yet
    last_ts: int  # the exchange time of the last merged row itself (Point.exchange_ts)
    last_delta: tuple[bool, int, int] | None = None  # (side, price, size_delta); None: snapshot

    @property
    def point(self) -> Point:
        return Point(self.gatherer_id, self.conn_id, self.frame_no, self.last_ts, self.last_delta)


@frozen
class Point:
    """The last merged row: its frame identity, exchange time and, for a delta, its change."""

    gatherer_id: str
    conn_id: int
    frame_no: int
    exchange_ts: int
    delta: tuple[bool, int, int] | None

    @classmethod
    def of(cls, row: DeltaRow | SnapshotRow) -> Point:
        if isinstance(row, DeltaRow):
            change = (row.side, row.price, row.size_delta)
            return cls(row.gatherer_id, row.conn_id, row.frame_no, row.exchange_ts, change)
        return cls(row.gatherer_id, row.conn_id, row.frame_no, point_ts(row), None)


@define
class MarketMerge:
    ticker: str
    deltas: list[DeltaRow] = field(factory=list)
    snapshots: list[SnapshotRow] = field(factory=list)
    holes: list[GapRow] = field(factory=list)
    switches: int = 0
    checkpoint: Checkpoint | None = None


def point_ts(row: SnapshotRow) -> int:
    return row.exchange_ts if row.exchange_ts is not None else row.snapshot_ts


def _match(segment: Segment, book: OrderBook, last: Point | None, at: int) -> int | None:
    """The position (0: the start, i: after the i-th delta) of ``segment`` that is the
    merged stream's current point, if any, and only if deltas follow it.

    On the connection of the last merged row the position is exact (``frame_no``).
    Elsewhere it is the latest position, among the deltas up to the newest merged exchange
    time ``at`` (times are not monotonic on a connection), whose book equals ``book`` and,
    when the last merged row is a delta, that ends with an equal delta at the same exchange
    time; the start qualifies when its snapshot is not older than ``at``.
    """
    if last is not None and (segment.gatherer_id, segment.conn_id) == (
        last.gatherer_id,
        last.conn_id,
    ):
        if segment.snapshot is not None and segment.snapshot.frame_no > last.frame_no:
            return 0 if segment.book == book else None
        position = sum(1 for row in segment.deltas if row.frame_no <= last.frame_no)
        return position if position < len(segment.deltas) else None
    current = segment.book.copy()
    found = None
    if current == book and (
        last is None
        or last.delta is None
        or (segment.snapshot is not None and point_ts(segment.snapshot) >= at)
    ):
        found = 0
    for index, row in enumerate(segment.deltas[:-1], 1):
        if row.exchange_ts > at:
            break
        try:
            apply_row(current, row)
        except BookError:
            break  # the segment is broken from here on
        if current == book and (
            last is None
            or last.delta is None
            or (row.exchange_ts, (row.side, row.price, row.size_delta))
            == (last.exchange_ts, last.delta)
        ):
            found = index
    return found


def _rank(prefer: Sequence[str], gatherer_id: str) -> int:
    return prefer.index(gatherer_id) if gatherer_id in prefer else len(prefer)


class _Stream:
    def __init__(self, ticker: str, prefer: Sequence[str], ckpt: Checkpoint | None) -> None:
        self.out = MarketMerge(ticker)
        self.prefer = prefer
        self.seq = ckpt.seq if ckpt else 0
        self.book = ckpt.book.copy() if ckpt else OrderBook(ticker)
        self.at = ckpt.exchange_ts if ckpt else 0
        self.last: DeltaRow | SnapshotRow | None = None  # last row taken in this call
        self._start: Point | None = ckpt.point if ckpt else None

    @property
    def point(self) -> Point | None:
        return Point.of(self.last) if self.last is not None else self._start

    def take_snapshot(self, row: SnapshotRow) -> None:
        self.seq += 1
        self.out.snapshots.append(row._replace(seq=self.seq))
        self.book = book_from_snapshot(row)
        self.at = max(self.at, point_ts(row))
        self.last = row

    def take_delta(self, row: DeltaRow) -> None:
        apply_row(self.book, row)  # first: a delta the book cannot take is not merged
        self.seq += 1
        self.out.deltas.append(row._replace(seq=self.seq))
        if row.exchange_ts > self.at:
            self.at = row.exchange_ts
        self.last = row

    def continuation(self, segments: Sequence[Segment]) -> tuple[Segment, int] | None:
        for segment in sorted(segments, key=lambda s: _rank(self.prefer, s.gatherer_id)):
            if not segment.deltas:
                continue
            position = _match(segment, self.book, self.point, self.at)
            if position is not None:
                return segment, position
        return None

    def successor(self, current: Segment | None, segments: Sequence[Segment]) -> Segment | None:
        """The segment that ``follows`` ``current`` (cut by a resnapshot) on its connection
        after the merged point: the exchange restated the book with nothing lost between
        (no gap), so the stream goes on through its snapshot without a hole."""
        point = self.point
        if current is None or not current.cut or point is None:
            return None
        if point.conn_id != current.conn_id:  # (a row's gatherer_id may not be the config's)
            return None
        after = [
            s
            for s in segments
            if s.snapshot is not None
            and (s.gatherer_id, s.conn_id) == (current.gatherer_id, current.conn_id)
            and s.snapshot.frame_no > point.frame_no
        ]
        first = min(after, key=lambda s: s.snapshot.frame_no if s.snapshot else 0, default=None)
        return first if first is not None and first.follows else None

    def pending(self, segments: Sequence[Segment]) -> bool:
        """Whether a segment starts at the merged point (a snapshot whose book equals the
        merged book, not older than the point) with no delta yet and not cut: its gatherer
        may still deliver them (its rows can be late), so wait rather than leave a hole."""
        point = self.point
        return any(
            s.snapshot is not None
            and not s.deltas
            and not s.cut
            and s.book == self.book
            and not _behind(s.snapshot, point)
            and (point is None or point.delta is None or point_ts(s.snapshot) >= self.at)
            for s in segments
        )

    def restart(self, segments: Sequence[Segment], after: int | None) -> Segment | None:
        point = self.point
        starts = [
            s
            for s in segments
            if s.snapshot is not None
            and (after is None or point_ts(s.snapshot) > after)
            and not _behind(s.snapshot, point)
        ]
        if not starts:
            return None
        return min(
            starts,
            key=lambda s: (
                point_ts(s.snapshot) if s.snapshot else 0,
                _rank(self.prefer, s.gatherer_id),
            ),
        )


def _behind(snapshot: SnapshotRow, point: Point | None) -> bool:
    """Whether ``snapshot`` is at or before ``point`` on the point's own connection (frame
    order): restarting there would merge that connection's rows again. A WebSocket
    snapshot's time is its receipt in its gatherer's clock, which may run ahead of the
    exchange's: without this a restart could go back and forth between two snapshots of
    one connection forever."""
    return (
        point is not None
        and (snapshot.gatherer_id, snapshot.conn_id) == (point.gatherer_id, point.conn_id)
        and snapshot.frame_no <= point.frame_no
    )


def merge_market(
    ticker: str,
    ckpt: Checkpoint | None,
    source: Segment | None,
    candidates: Sequence[Segment],
    *,
    prefer: Sequence[str],
    source_alive: bool = True,
) -> MarketMerge:
    """Extend the production stream of ``ticker``.

    ``source`` continues the checkpoint (its book is the checkpoint's); ``candidates`` are
    the segments of the other live gatherers (and of the source's gatherer) that may take
    over. Returns the rows to write and the new checkpoint (``None`` when nothing started).
    """
    stream = _Stream(ticker, prefer, ckpt)
    current: Segment | None = source
    position = 0
    waiting = False
    while True:
        broken = False
        if current is not None:
            for row in current.deltas[position:]:
                try:
                    stream.take_delta(row)
                except BookError:  # the segment's book is wrong from here on
                    broken = True
                    candidates = [c for c in candidates if c is not current]
                    break
        ended = broken or current is None or current.cut or (current is source and not source_alive)
        others = [c for c in candidates if c is not current]
        found = stream.continuation(others) if stream.point is not None else None
        if found is not None:
            if stream.point is not None and found[0].gatherer_id != stream.point.gatherer_id:
                stream.out.switches += 1
            current, position = found
            continue
        if not ended:
            break
        successor = None if broken else stream.successor(current, others)
        if successor is not None:
            assert successor.snapshot is not None
            stream.take_snapshot(successor.snapshot)  # nothing lost: no hole
            current, position = successor, 0
            continue
        if stream.point is not None and stream.pending(others):
            waiting = True
            break
        restart = stream.restart(others, stream.point.exchange_ts if stream.point else None)
        if restart is None:
            waiting = stream.point is not None
            break
        assert restart.snapshot is not None
        if stream.point is not None:
            _hole(stream, stream.at, restart)
        stream.take_snapshot(restart.snapshot)
        current, position = restart, 0
    last = stream.last
    if last is None or current is None:  # nothing new: the old checkpoint, flag updated
        stream.out.checkpoint = None if ckpt is None else attrs.evolve(ckpt, waiting=waiting)
        return stream.out
    stream.out.checkpoint = Checkpoint(
        ticker=ticker,
        seq=stream.seq,
        gatherer_id=current.gatherer_id,
        conn_id=current.conn_id,
        frame_no=last.frame_no,
        received_at=last.received_at,
        segment_start=current.start_received_at,
        exchange_ts=stream.at,
        book=stream.book,
        waiting=waiting,
        last_ts=Point.of(last).exchange_ts,
        last_delta=Point.of(last).delta,
    )
    return stream.out


def _hole(stream: _Stream, start: int, restart: Segment) -> None:
    assert restart.snapshot is not None
    stream.out.holes.append(
        GapRow(
            start_ts=start,
            end_ts=point_ts(restart.snapshot),
            gatherer_id=DEDUP_ID,
            conn_id=0,
            sid=None,
            ticker=stream.out.ticker,
            kind=HOLE_KIND,
            expected_seq=None,
            got_seq=None,
            detail=f"no gatherer has this stretch; resumed from {restart.gatherer_id}'s snapshot",
        )
    )
