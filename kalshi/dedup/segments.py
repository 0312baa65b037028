"""Pure: one gatherer's order-book stream of one market, cut into trustworthy segments.

A *segment* is a stretch of one connection in which the gatherer's book is exact: it starts
at a WebSocket snapshot (or, for the current source, at the merge checkpoint) and runs
through the deltas of that connection for that market, in ``frame_no`` order, until

* the next snapshot of the market on the same connection (a resnapshot starts a new one;
  when no gap of the connection lies between, the new segment ``follows`` the old one: the
  exchange restated the book, nothing was lost, e.g. the empty book it sends when a market
  closes, kalshi-api.md §3.1; outside tester pbreak8 F10),
* a gap the gatherer recorded for that connection (market-wide or for this market): the
  first delta received after the gap's ``start_ts`` and everything after it are dropped,
* a delta the book cannot take (a level would go negative; found when it is applied),
* the end of its connection's turn, once another connection of the gatherer has a later
  snapshot of the market (a reconnect, or the market moved).

A segment ended by one of these is ``cut``; one that simply runs out of rows is open (more
may arrive).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import attrgetter

from attrs import define, field

from kalshi.book import OrderBook
from kalshi.errors import BookError
from kalshi.models.rows import DeltaRow, GapRow, SnapshotRow

_FRAME_NO = attrgetter("frame_no")

__all__ = [
    "Segment",
    "apply_change",
    "apply_row",
    "book_from_snapshot",
    "build_segments",
    "cut_at_gaps",
]


@define
class Segment:
    gatherer_id: str
    conn_id: int
    ticker: str
    book: OrderBook  # the book at the segment's start
    start_received_at: int  # received_at of the row the segment starts at (gatherer clock)
    snapshot: SnapshotRow | None  # the snapshot it starts at; None for a checkpoint start
    deltas: list[DeltaRow] = field(factory=list)
    cut: bool = False
    # its snapshot came on its connection after the previous segment's rows, with no gap
    # of the connection and no other connection's snapshot between: nothing was lost
    follows: bool = False


def _levels(text: str) -> dict[int, int]:
    import orjson

    return {int(price): int(size) for price, size in orjson.loads(text)}


def book_from_snapshot(row: SnapshotRow) -> OrderBook:
    book = OrderBook(row.ticker)
    book.yes = _levels(row.yes_bids)
    book.no = _levels(row.no_bids)
    return book


def apply_change(book: OrderBook, side: bool, price: int, change: int) -> None:
    """``size += change`` at ``(side, price)`` (``True``: yes); the level goes at 0. A
    negative result raises :class:`BookError` and leaves the book unchanged.

    The rule of :meth:`OrderBook.apply_delta`, without building a model per row (this is
    the merge's innermost loop).
    """
    levels = book.yes if side else book.no
    size = levels.get(price, 0) + change
    if size > 0:
        levels[price] = size
    elif size == 0:
        levels.pop(price, None)
    else:
        name = "yes" if side else "no"
        raise BookError(f"{book.ticker}: {name} level {price} would have size {size}")


def apply_row(book: OrderBook, row: DeltaRow) -> None:
    """Apply a delta row (see :func:`apply_change`)."""
    apply_change(book, row.side, row.price, row.size_delta)


def _gap_hits(gap: GapRow, conn_id: int, ticker: str) -> bool:
    return gap.conn_id == conn_id and gap.ticker in (None, ticker)


def cut_at_gaps(segment: Segment, gaps: Iterable[GapRow]) -> None:
    """Drop the deltas received after a gap of the segment's connection; mark it cut.

    (A delta the book cannot take is found by the merge when it applies it.)
    """
    start = min(
        (
            g.start_ts
            for g in gaps
            if _gap_hits(g, segment.conn_id, segment.ticker)
            and g.start_ts >= segment.start_received_at
        ),
        default=None,
    )
    if start is None:
        return
    for index, row in enumerate(segment.deltas):
        if row.received_at > start:
            del segment.deltas[index:]
            segment.cut = True
            return


def build_segments(
    gatherer_id: str,
    ticker: str,
    snapshots: Sequence[SnapshotRow],
    deltas: Sequence[DeltaRow],
    gaps: Sequence[GapRow],
) -> list[Segment]:
    """Segments of one gatherer and market from its WS snapshots, deltas and gaps.

    Deltas before the first snapshot of their connection belong to no segment (their book
    is unknown). REST snapshots are not positioned in a stream and are ignored here.
    """
    by_conn: dict[int, list[SnapshotRow | DeltaRow]] = {}
    for snap in snapshots:
        if snap.source == "ws" and snap.ticker == ticker:
            by_conn.setdefault(snap.conn_id, []).append(snap)
    for delta in deltas:
        if delta.ticker == ticker:
            by_conn.setdefault(delta.conn_id, []).append(delta)
    segments: list[Segment] = []
    previous: dict[int, Segment] = {}  # a resnapshot's segment -> the one it ends
    for conn_id in sorted(by_conn):
        current: Segment | None = None
        for row in sorted(by_conn[conn_id], key=_FRAME_NO):
            if isinstance(row, SnapshotRow):
                segment = Segment(
                    gatherer_id, conn_id, ticker, book_from_snapshot(row), row.received_at, row
                )
                if current is not None:
                    current.cut = True
                    previous[id(segment)] = current
                current = segment
                segments.append(current)
            elif current is not None:
                current.deltas.append(row)
    for segment in segments:
        before = previous.get(id(segment))
        if before is not None:
            since, until = before.start_received_at, segment.start_received_at
            segment.follows = not any(
                _gap_hits(g, segment.conn_id, ticker) and since <= g.start_ts <= until for g in gaps
            ) and not any(
                other.conn_id != segment.conn_id and since < other.start_received_at <= until
                for other in segments
            )
    for segment in segments:
        if any(
            other.conn_id != segment.conn_id and other.start_received_at > segment.start_received_at
            for other in segments
        ):
            segment.cut = True  # another connection took the market over later
        cut_at_gaps(segment, gaps)
    return segments
