"""Rows the gatherer made outside the WebSocket pipeline, from their journal records: REST
answers (``kind: rest``: trade backfill pages, the snapshot poller's books) and the gap
rows it wrote itself (``gap`` markers holding the row: reconnect, outage, backfill,
subscription_refused, stopped, a crossed REST book, a live book that never matched its REST
answer). ``docs/journal.md``, "Line format"."""

from __future__ import annotations

from kalshi.journal import JournalRecord
from kalshi.models.book import BookSnapshot
from kalshi.models.rows import GapRow, Row, SnapshotRow
from kalshi.pipeline.frames import book_json, trade_row
from kalshi.wire.rest import decode_orderbooks, decode_trades_page

__all__ = ["MARKETS_PATH", "ORDERBOOKS_PATH", "TRADES_PATH", "made_outside", "polled_row"]

TRADES_PATH = "/markets/trades"
MARKETS_PATH = "/markets"  # the market listing: rows from the gatherer's registry
ORDERBOOKS_PATH = "/markets/orderbooks"  # the snapshot poller (kalshi-api.md §4.5)


def polled_row(snap: BookSnapshot, gatherer_id: str, received_at: int) -> SnapshotRow:
    """The ``orderbook_snapshots`` row of a REST book received at ``received_at`` (µs):
    ``source='rest'``, dated by its receipt (a REST book has no exchange time)."""
    return SnapshotRow(
        snapshot_ts=received_at,
        exchange_ts=None,
        received_at=received_at,
        gatherer_id=gatherer_id,
        ticker=snap.ticker,
        source="rest",
        yes_bids=book_json(snap.yes),
        no_bids=book_json(snap.no),
        conn_id=0,
        frame_no=0,
        sid=None,
        seq=None,
    )


def made_outside(item: JournalRecord) -> list[tuple[str, Row]]:
    """The rows of a ``rest`` record or a ``gap`` marker, as the gatherer stored them
    (received at the record's ``wall_us``); ``[]`` for a REST path that makes no rows here.
    Raises ``DecodeError`` for a body that does not decode, ``ValueError`` for a gap
    marker whose row is not a gaps row."""
    if item.kind == "gap":
        row = item.detail["row"]
        if not isinstance(row, list) or len(row) != len(GapRow._fields):
            raise ValueError(f"gap marker: expected {len(GapRow._fields)} values, got {row!r}")
        return [("gaps", GapRow(**dict(zip(GapRow._fields, row, strict=True))))]
    path = item.detail.get("path")
    if path == ORDERBOOKS_PATH:  # a crossed book's gap row is a gap marker of its own
        books = decode_orderbooks(item.raw)
        return [
            ("orderbook_snapshots", polled_row(s, item.gatherer_id, item.wall_us)) for s in books
        ]
    if path != TRADES_PATH:
        return []
    skipped = set(item.detail.get("skipped") or ())
    trades, _ = decode_trades_page(item.raw)
    return [
        ("trades", trade_row(t, item.gatherer_id, item.wall_us, "rest"))
        for t in trades
        if t.trade_id not in skipped
    ]
