"""Order books as production holds them: each market's merged stream, in ``seq`` order."""

from __future__ import annotations

import orjson

from kalshi.book import OrderBook
from kalshi.dedup.segments import apply_change
from kalshi.errors import BookError
from kalshi.store import connect_db

__all__ = ["production_books"]

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
