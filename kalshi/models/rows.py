"""Database rows, one NamedTuple per table, in column order.

Rows are plain tuples so the writer can hand them to binary COPY without conversion.
Units: prices in hundred-thousandths of a dollar, sizes in hundredths of a contract,
timestamps in microseconds since the epoch (BIGINT), booleans for sides (``True`` = yes).

Identity (see ``docs/data-model.md``): a row that came from a WebSocket frame carries the
connection session id ``conn_id`` and the frame's number on that connection ``frame_no``;
together with ``gatherer_id`` they name the frame, so the same frame stored twice (a journal
replayed twice) collides, and two different frames never do. Trades are keyed by the
exchange's ``trade_id`` so REST backfill and the live feed collide too.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "GAP_KINDS",
    "TABLE_COLUMNS",
    "DeltaRow",
    "GapRow",
    "LifecycleRow",
    "MarketRow",
    "Row",
    "SnapshotRow",
    "TickerRow",
    "TradeRow",
]


class TradeRow(NamedTuple):
    exchange_ts: int
    received_at: int
    gatherer_id: str
    ticker: str
    trade_id: str
    price: int  # yes price
    size: int
    taker_side: bool  # True: taker bought yes
    is_block_trade: bool
    source: str  # 'ws' | 'rest'
    conn_id: int  # 0 for rest
    frame_no: int  # 0 for rest
    seq: int | None


class DeltaRow(NamedTuple):
    exchange_ts: int  # ts_ms refined to the µs by ts (finest_us), or received_at if no time
    received_at: int
    gatherer_id: str
    ticker: str
    side: bool  # True: yes bids; False: no bids (no-leg price)
    price: int
    size_delta: int
    conn_id: int
    frame_no: int
    sid: int
    seq: int


class SnapshotRow(NamedTuple):
    snapshot_ts: int  # received_at for ws, request time for rest
    exchange_ts: int | None
    received_at: int
    gatherer_id: str
    ticker: str
    source: str  # 'ws' | 'rest'
    yes_bids: str  # JSON [[price, size], ...] ascending
    no_bids: str  # JSON [[price, size], ...] ascending, no-leg prices
    conn_id: int  # 0 for rest
    frame_no: int  # 0 for rest; a per-poll counter is not needed (snapshot_ts differs)
    sid: int | None
    seq: int | None


class TickerRow(NamedTuple):
    exchange_ts: int
    received_at: int
    gatherer_id: str
    ticker: str
    yes_bid: int | None
    yes_ask: int | None
    last_price: int | None
    volume: int | None
    open_interest: int | None
    dollar_volume: int | None
    dollar_open_interest: int | None
    yes_bid_size: int | None
    yes_ask_size: int | None
    last_trade_size: int | None
    conn_id: int
    frame_no: int
    # 1 + the rows of the same connection and identity received before it: 1 in a
    # gatherer's table; the deduplicator reads it computed and stores it (docs/dedup.md)
    occurrence: int = 1


class LifecycleRow(NamedTuple):
    exchange_ts: int  # the event's own time when it has one, else received_at
    received_at: int
    gatherer_id: str
    ticker: str  # market ticker, or event ticker for event_lifecycle / event_fee_update
    event_type: str  # created, activated, ..., or 'event_created' / 'event_fee_update'
    payload: str  # the frame's msg as JSON text
    conn_id: int
    frame_no: int
    seq: int | None
    occurrence: int = 1  # as TickerRow.occurrence


class MarketRow(NamedTuple):
    ticker: str
    event_ticker: str
    status: str
    market_type: str
    title: str
    open_time: int | None
    close_time: int | None
    updated_at: int  # when we last wrote it (µs)
    gatherer_id: str
    payload: str  # the Market as JSON text


GAP_KINDS: frozenset[str] = frozenset(
    {
        "seq_gap",  # a subscription's seq skipped (pipeline); expected_seq/got_seq say where
        "book_invalid",  # a book that cannot be right: crossed (WS or REST), bad delta
        "subscription_refused",  # the exchange refused a subscription (error reply)
        "stopped",  # a connection stopped after a permanent close code (end_ts open)
        "reconnect",  # a WebSocket session ended; start_ts..end_ts may lack frames
        "outage",  # the gatherer itself was down (from its last stored frame to restart)
        "backfill",  # trades due over REST: open until the window's trades are committed
        "merge_hole",  # dedup: no gatherer has this stretch of a market's order book
    }
)
"""Every ``gaps.kind`` written (``tests/unit/test_gap_kinds.py`` checks the code emits
exactly these)."""


class GapRow(NamedTuple):
    start_ts: int  # last good moment (µs)
    end_ts: int | None  # when recovered (µs), None while open
    gatherer_id: str
    conn_id: int
    sid: int | None
    ticker: str | None
    kind: str  # one of GAP_KINDS
    expected_seq: int | None
    got_seq: int | None
    detail: str


Row = TradeRow | DeltaRow | SnapshotRow | TickerRow | LifecycleRow | MarketRow | GapRow

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": TradeRow._fields,
    "orderbook_deltas": DeltaRow._fields,
    "orderbook_snapshots": SnapshotRow._fields,
    "tickers": TickerRow._fields,
    "market_lifecycle": LifecycleRow._fields,
    "markets": MarketRow._fields,
    "gaps": GapRow._fields,
}
