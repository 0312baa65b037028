"""Order books as production holds them: each market's merged stream, in ``seq`` order."""

from __future__ import annotations

import orjson
from attrs import frozen

from kalshi.book import OrderBook
from kalshi.dedup.segments import apply_change
from kalshi.errors import BookError
from kalshi.store import Database, connect_db

__all__ = ["StreamBook", "book_before", "production_books", "stream_cut"]

_STREAM_SQL = (
    "SELECT ticker, seq, yes_bids::text, no_bids::text, NULL, NULL, NULL"
    " FROM orderbook_snapshots WHERE source = 'ws'"
    " UNION ALL SELECT ticker, seq, NULL, NULL, side, price, size_delta"
    " FROM orderbook_deltas ORDER BY 1, 2"
)


def production_books(url: str) -> dict[str, OrderBook]:
    """Every market's book rebuilt from the production database at ``url``: snapshots
    reset it, deltas add, by ``seq``. Raises :class:`BookError` when a market's stream is
    not contiguous or a level would go negative (production is then inconsistent)."""
    with connect_db(url) as db:
        rows = db.query(_STREAM_SQL)
    books: dict[str, OrderBook] = {}
    last: dict[str, int] = {}
    for ticker, seq, yes, no, side, price, change in rows:
        if seq != last.get(ticker, 0) + 1:
            raise BookError(f"{ticker}: production seq {seq} after {last.get(ticker, 0)}")
        last[ticker] = seq
        if yes is not None:
            book = books[ticker] = OrderBook(ticker)
            book.yes = {p: s for p, s in orjson.loads(yes)}
            book.no = {p: s for p, s in orjson.loads(no)}
            continue
        apply_change(books[ticker], side, price, change)
    return books


@frozen
class StreamBook:
    """A market's merged book at one position of production's stream. ``seq``: the last
    position applied (0: none); ``snapshot_at``: the receive time (µs) of the WS snapshot
    it starts from (``None``: no snapshot before, the book starts empty); ``received_at``:
    the latest receive time (µs) of the rows applied (0: none)."""

    book: OrderBook
    seq: int
    snapshot_at: int | None
    received_at: int


def book_before(db: Database, ticker: str, seq: int) -> StreamBook:
    """The merged book of ``ticker`` just before stream position ``seq``: its latest WS
    snapshot below ``seq``, then its deltas up to ``seq - 1``, by position (docs/dedup.md,
    "The order-book stream"). The one reading of a production book both the export (a
    window's ``start`` rows) and ``kalshi snapshot --source db`` use. Raises
    :class:`BookError` when a delta would make a level negative (production is then
    inconsistent)."""
    book = OrderBook(ticker)
    found = db.query(
        "SELECT seq, yes_bids::text, no_bids::text, received_at FROM orderbook_snapshots"
        " WHERE ticker = %s AND source = 'ws' AND seq < %s ORDER BY seq DESC LIMIT 1",
        (ticker, seq),
    )
    since, snapshot_at, last_seq, received = 0, None, 0, 0
    if found:
        since = last_seq = int(found[0][0])
        book.yes = {int(p): int(s) for p, s in orjson.loads(found[0][1])}
        book.no = {int(p): int(s) for p, s in orjson.loads(found[0][2])}
        snapshot_at = received = int(found[0][3])
    for position, side, price, change, delta_at in db.query(
        "SELECT seq, side, price, size_delta, received_at FROM orderbook_deltas"
        " WHERE ticker = %s AND seq > %s AND seq < %s ORDER BY seq",
        (ticker, since, seq),
    ):
        apply_change(book, side, price, change)
        last_seq, received = int(position), max(received, int(delta_at))
    return StreamBook(book, last_seq, snapshot_at, received)


def stream_cut(db: Database, ticker: str, until_us: int) -> int:
    """The first stream position of ``ticker`` whose row was received after ``until_us``
    (µs, a gatherer's receive time), else one past the stream's end: the positions below it
    are the longest prefix of the stream received by then. Merged rows come from several
    gatherers, so their receive times are not monotonic in the stream at a source switch;
    the prefix never applies a row received after ``until_us``."""
    found = db.query(
        "SELECT least((SELECT min(seq) FROM orderbook_deltas"
        "              WHERE ticker = %s AND received_at > %s),"
        "             (SELECT min(seq) FROM orderbook_snapshots"
        "              WHERE ticker = %s AND source = 'ws' AND received_at > %s),"
        "             coalesce(greatest((SELECT max(seq) FROM orderbook_deltas WHERE ticker = %s),"
        "                               (SELECT max(seq) FROM orderbook_snapshots"
        "                                WHERE ticker = %s AND source = 'ws')), 0) + 1)",
        (ticker, until_us, ticker, until_us, ticker, ticker),
    )
    return int(found[0][0])
