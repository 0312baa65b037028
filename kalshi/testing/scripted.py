"""Rows written as a gatherer would, without the pipeline: kept for one test only.

Superseded by :mod:`kalshi.testing.recording`, whose rows the real pipeline makes of the
frames the gatherers received. ``tests/dedup/test_dedup_merge.py::
test_gatherer_clocks_off_by_minutes_lose_nothing`` stays on these rows until the merge
restarts after a hole without comparing gatherer clocks: on the pipeline's rows it widens a
``merge_hole`` over a delta a gatherer whose clock is ahead has (see that test). Delete this
module when that test moves to :mod:`kalshi.testing.recording`.

The exchange's truth is a list of events (book deltas and trades) over a few markets; a
gatherer records every event as rows (``docs/data-model.md``): a WS snapshot per market when
it subscribes, one delta or trade row per frame, ``frame_no`` counting frames per
connection. A *miss* ``(first, last, kind)`` drops events ``first..last-1``; the event
``last`` arrives (stored, after the gap) and reveals the gap: a ``gaps`` row is written and
the book is recovered by fresh snapshots (``seq_gap``: on the same connection) or by a new
connection (``reconnect``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from attrs import define, field, frozen

__all__ = ["T0", "Event", "Recording", "Truth", "covered", "holes", "make_truth", "record", "split"]

from kalshi.book import OrderBook
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow, TickerRow, TradeRow

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


@frozen
class Event:
    index: int
    exchange_ts: int
    ticker: str
    kind: str  # 'delta' | 'trade' | 'ticker'
    side: bool = True
    price: int = 0
    size: int = 0  # size_delta for deltas
    trade_id: str = ""


@define
class Truth:
    markets: list[str]
    start: dict[str, OrderBook]
    events: list[Event]
    books: dict[str, OrderBook] = field(factory=dict)  # at the end

    def deltas(self) -> list[Event]:
        return [e for e in self.events if e.kind == "delta"]

    def trades(self) -> list[Event]:
        return [e for e in self.events if e.kind == "trade"]


def make_truth(seed: int, *, markets: int = 3, events: int = 300, step_us: int = 1000) -> Truth:
    rng = random.Random(seed)
    names = [f"KXTEST-{i:02d}" for i in range(markets)]
    start: dict[str, OrderBook] = {}
    for name in names:
        book = OrderBook(name)
        for price in range(30_000, 50_000, 5_000):
            book.yes[price] = rng.randint(1, 50) * 100
        for price in range(40_000, 60_000, 5_000):
            book.no[price] = rng.randint(1, 50) * 100
        start[name] = book
    books = {name: book.copy() for name, book in start.items()}
    out: list[Event] = []
    clock = T0 + step_us
    for index in range(events):
        if rng.random() < 0.7:  # several events share a millisecond now and then
            clock += step_us * rng.randint(1, 3)
        # Exchange times are not monotonic on a connection: now and then an event carries
        # a time a few milliseconds before the previous one's.
        ts = clock - (step_us * rng.randint(1, 4) if rng.random() < 0.1 else 0)
        ticker = rng.choice(names)
        book = books[ticker]
        roll = rng.random()
        if roll < 0.15:
            out.append(
                Event(
                    index,
                    ts,
                    ticker,
                    "trade",
                    rng.random() < 0.5,
                    rng.randint(1, 99) * 1000,
                    rng.randint(1, 20) * 100,
                    f"trade-{seed}-{index:06d}",
                )
            )
            continue
        if roll < 0.25:
            out.append(Event(index, ts, ticker, "ticker", price=rng.randint(1, 99) * 1000))
            continue
        side = rng.random() < 0.5
        levels = book.yes if side else book.no
        if levels and rng.random() < 0.5:
            price = rng.choice(sorted(levels))
            change = -rng.randint(1, levels[price] // 100) * 100
        else:
            price = rng.randint(1, 99) * 1000
            change = rng.randint(1, 30) * 100
        event = Event(index, ts, ticker, "delta", side, price, change)
        _apply(book, event)
        out.append(event)
    return Truth(names, start, out, books)


def _apply(book: OrderBook, event: Event) -> None:
    levels = book.yes if event.side else book.no
    size = levels.get(event.price, 0) + event.size
    if size:
        levels[event.price] = size
    else:
        levels.pop(event.price, None)


def _levels_json(levels: dict[int, int]) -> str:
    return json.dumps([[p, s] for p, s in sorted(levels.items())])


@define
class Recording:
    """What one gatherer wrote, per table."""

    gatherer_id: str
    trades: list[TradeRow] = field(factory=list)
    orderbook_deltas: list[DeltaRow] = field(factory=list)
    orderbook_snapshots: list[SnapshotRow] = field(factory=list)
    tickers: list[TickerRow] = field(factory=list)
    gaps: list[GapRow] = field(factory=list)

    def tables(self) -> dict[str, Sequence[Row]]:
        return {
            "trades": self.trades,
            "orderbook_deltas": self.orderbook_deltas,
            "orderbook_snapshots": self.orderbook_snapshots,
            "tickers": self.tickers,
            "gaps": self.gaps,
        }


@define
class _Conn:
    conn_id: int
    frame_no: int = 0
    seq: int = 0

    def next(self) -> tuple[int, int]:
        self.frame_no += 1
        self.seq += 1
        return self.frame_no, self.seq


def record(
    truth: Truth,
    gatherer_id: str,
    misses: Sequence[tuple[int, int, str]] = (),
    *,
    latency_us: int = 700,
    conn_base: int = 1,
) -> Recording:
    rec = Recording(gatherer_id)
    books = {name: book.copy() for name, book in truth.start.items()}
    conn = _Conn(conn_base * 1_000_000)
    sid = 1

    def snapshot_all(at: int) -> None:
        for name in truth.markets:
            frame_no, seq = conn.next()
            book = books[name]
            rec.orderbook_snapshots.append(
                SnapshotRow(
                    snapshot_ts=at,
                    exchange_ts=None,
                    received_at=at,
                    gatherer_id=gatherer_id,
                    ticker=name,
                    source="ws",
                    yes_bids=_levels_json(book.yes),
                    no_bids=_levels_json(book.no),
                    conn_id=conn.conn_id,
                    frame_no=frame_no,
                    sid=sid,
                    seq=seq,
                )
            )

    snapshot_all(T0 + latency_us)
    last_good = T0 + latency_us
    missing = {i: (first, last, kind) for first, last, kind in misses for i in range(first, last)}
    ends = {last: (first, kind) for first, last, kind in misses}
    received = T0 + latency_us
    for event in truth.events:
        # Received in exchange order, later by the latency, and never before the last frame.
        received = max(received + 1, event.exchange_ts + latency_us)
        if event.kind == "delta":
            _apply(books[event.ticker], event)
        if event.index in missing:
            if missing[event.index][2] == "seq_gap":
                conn.next()  # the frame is lost but consumed its seq
            continue
        if event.index in ends:
            first, kind = ends[event.index]
            rec.gaps.append(
                GapRow(
                    start_ts=last_good,
                    end_ts=received + 1,
                    gatherer_id=gatherer_id,
                    conn_id=conn.conn_id,
                    sid=sid,
                    ticker=None,
                    kind=kind,
                    expected_seq=None,
                    got_seq=None,
                    detail=f"missed events {first}..{event.index - 1}",
                )
            )
            if kind == "reconnect":  # this frame was on the lost connection
                conn = _Conn(conn.conn_id + 1)
                sid += 1
                snapshot_all(received + 1)  # the book as it is after this event
                last_good = received + 1
                continue
        frame_no, seq = conn.next()
        if event.kind == "delta":
            rec.orderbook_deltas.append(
                DeltaRow(
                    exchange_ts=event.exchange_ts,
                    received_at=received,
                    gatherer_id=gatherer_id,
                    ticker=event.ticker,
                    side=event.side,
                    price=event.price,
                    size_delta=event.size,
                    conn_id=conn.conn_id,
                    frame_no=frame_no,
                    sid=sid,
                    seq=seq,
                )
            )
        elif event.kind == "trade":
            rec.trades.append(
                TradeRow(
                    exchange_ts=event.exchange_ts,
                    received_at=received,
                    gatherer_id=gatherer_id,
                    ticker=event.ticker,
                    trade_id=event.trade_id,
                    price=event.price,
                    size=event.size,
                    taker_side=event.side,
                    is_block_trade=False,
                    source="ws",
                    conn_id=conn.conn_id,
                    frame_no=frame_no,
                    seq=seq,
                )
            )
        else:
            rec.tickers.append(
                TickerRow(
                    exchange_ts=event.exchange_ts,
                    received_at=received,
                    gatherer_id=gatherer_id,
                    ticker=event.ticker,
                    yes_bid=event.price,
                    yes_ask=event.price + 1000,
                    last_price=event.price,
                    volume=100 * event.index,
                    open_interest=None,
                    dollar_volume=None,
                    dollar_open_interest=None,
                    yes_bid_size=None,
                    yes_ask_size=None,
                    last_trade_size=None,
                    conn_id=conn.conn_id,
                    frame_no=frame_no,
                )
            )
        if event.index in ends:
            snapshot_all(received + 1)  # resnapshot on the same connection
        last_good = received
    return rec


def covered(
    truth: Truth, misses: Sequence[Sequence[tuple[int, int, str]]], kind: str
) -> list[Event]:
    """Events of ``kind`` that at least one gatherer recorded where it can be trusted.

    A delta that reveals a gap is stored but untrustworthy (the book missed something
    before it); a trade or ticker that reveals a gap is good, unless it came over the
    connection that was lost (``reconnect``).
    """

    def missed(event: Event, first: int, last: int, how: str) -> bool:
        if kind == "delta" or how == "reconnect":
            return first <= event.index <= last
        return first <= event.index < last

    return [
        event
        for event in truth.events
        if event.kind == kind
        and any(not any(missed(event, *m) for m in gatherer) for gatherer in misses)
    ]


def holes(truth: Truth, misses: Sequence[Sequence[tuple[int, int, str]]]) -> list[tuple[str, int]]:
    """``(ticker, first lost delta index)`` of each run of a market's deltas nobody kept."""
    kept = {e.index for e in covered(truth, misses, "delta")}
    out = []
    for ticker in truth.markets:
        previous_lost = False
        for event in truth.deltas():
            if event.ticker != ticker:
                continue
            lost = event.index not in kept
            if lost and not previous_lost:
                out.append((ticker, event.index))
            previous_lost = lost
    return out


_TIME = {  # when the gatherer wrote the row: in the order it received the frames
    "trades": "received_at",
    "orderbook_deltas": "received_at",
    "orderbook_snapshots": "snapshot_ts",
    "tickers": "received_at",
    "gaps": "start_ts",
}


def split(rec: Recording, cuts: Sequence[int]) -> list[Recording]:
    """``rec`` in parts, as a gatherer writes it: rows received up to each cut time (µs),
    then the rest."""
    bounds = [*cuts, None]
    parts = [Recording(rec.gatherer_id) for _ in bounds]
    for table, rows in rec.tables().items():
        for row in rows:
            at = getattr(row, _TIME[table])
            index = next(i for i, b in enumerate(bounds) if b is None or at <= b)
            getattr(parts[index], table).append(row)
    return parts
