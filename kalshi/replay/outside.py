"""Rows the gatherer made outside the WebSocket pipeline, from their journal records: REST
answers (``kind: rest``: trade backfill pages) and the gap rows it wrote itself (``gap``
markers holding the row: reconnect, outage, backfill, subscription_refused, stopped, a
crossed REST book). ``docs/journal.md``, "Line format"."""

from __future__ import annotations

from kalshi.journal import JournalRecord
from kalshi.models.rows import GapRow, Row
from kalshi.pipeline import trade_row
from kalshi.wire.rest import decode_trades_page

__all__ = ["made_outside"]

TRADES_PATH = "/markets/trades"


def made_outside(item: JournalRecord) -> list[tuple[str, Row]]:
    """The rows of a ``rest`` record or a ``gap`` marker, as the gatherer stored them
    (received at the record's ``wall_us``); ``[]`` for a REST path that makes no rows here.
    Raises ``DecodeError`` for a body that does not decode, ``ValueError`` for a gap
    marker whose row is not a gaps row."""
    if item.kind == "gap":
        row = item.detail["row"]
        if not isinstance(row, list) or len(row) != len(GapRow._fields):
            raise ValueError(f"gap marker: expected {len(GapRow._fields)} values, got {row!r}")
        return [("gaps", GapRow(*row))]
    if item.detail.get("path") != TRADES_PATH:
        return []
    skipped = set(item.detail.get("skipped") or ())
    trades, _ = decode_trades_page(item.raw)
    return [
        ("trades", trade_row(t, item.gatherer_id, item.wall_us, "rest"))
        for t in trades
        if t.trade_id not in skipped
    ]
