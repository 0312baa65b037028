"""A scripted exchange, and gatherers that record it with injected misses, through the
real pipeline (for tests and benchmarks of everything downstream of the gatherer's
database, e.g. the deduplicator).

The exchange's truth is a list of events (book deltas, trades and tickers) over a few
markets, in exchange-time order, several per millisecond at times. A gatherer's recording
is what its sockets received, as journal records in the exchange's wire shapes
(kalshi-api.md §2-3): one connection per channel (``orderbook_delta``, ``trade``,
``ticker``, as the gatherer opens them), each a ``connect`` marker, the ``subscribe`` sent,
the ``subscribed`` reply, then the frames with their ``sid`` and ``seq``; the order-book
connection starts with a snapshot of every market. Those records go through
:class:`kalshi.replay.Replayer` (the pipeline of live gathering and ``kalshi replay``), so
the rows, their keys and the ``gaps`` rows are exactly what ``kalshi replay`` of that
journal writes; nothing here builds a row.

A *miss* ``(first, last, kind)`` loses events ``first..last-1``:

* ``seq_gap``: their frames consumed their subscription's ``seq``; the next order-book
  frame reveals the gap (the pipeline writes a ``seq_gap`` row and marks the books stale)
  and the gatherer asks for fresh snapshots (``get_snapshot``), answered on the same
  ``sid``. Lost tickers are unsequenced (kalshi-api.md §2.4) and leave no trace.
* ``reconnect``: the event ``last`` is lost too, with every connection; new connections
  (new ``conn_id`` and ``sid``) subscribe again and snapshot the books as they are after it.
* ``rest_mismatch``: the order-book deltas of ``first..last-1`` that take size away are lost
  *silently* (no ``seq`` consumed: the book is wrong and nothing on the socket says so);
  the others arrive. After ``last-1`` the snapshot poller's answer shows it: for each
  market that lost one, the ``gap`` marker the gatherer journals (an open
  ``book_invalid`` on its order-book connection and sid from the receipt of its first
  lost delta, :meth:`kalshi.pipeline.FrameProcessor.mismatch`), then its resnapshot
  (``get_snapshot``), which ends the gap.

Books never cross (YES bids below 50¢, NO bids below 50¢), as on the exchange; the
pipeline would flag a crossed book.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson
from attrs import define, field, frozen

from kalshi.book import OrderBook
from kalshi.journal import JournalRecord
from kalshi.models.rows import (
    DeltaRow,
    GapRow,
    LifecycleRow,
    Row,
    SnapshotRow,
    TickerRow,
    TradeRow,
)
from kalshi.replay import Replayer

__all__ = [
    "T0",
    "Event",
    "Recording",
    "Truth",
    "covered",
    "holes",
    "journal",
    "make_truth",
    "record",
    "split",
]

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


@frozen
class Event:
    index: int
    exchange_ts: int
    ticker: str
    kind: str  # 'delta' | 'trade' | 'ticker' | 'lifecycle'
    side: bool = True
    price: int = 0
    size: int = 0  # size_delta for deltas
    trade_id: str = ""
    message: tuple[str, bytes] = ("", b"")  # a lifecycle frame's type and msg (JSON)


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
        for price in range(20_000, 40_000, 5_000):  # YES asks 0.65..0.80: never crossed
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
            price = rng.randint(1, 49) * 1000  # bids below 50¢ on both sides: never crossed
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


def _dollars(price: int) -> str:
    """A price in our units as the exchange writes it (``"0.4200"``, kalshi-api.md §3)."""
    return f"{price // 100_000}.{price % 100_000 // 10:04d}"


def _count(size: int) -> str:
    """A count in our units as the exchange writes it (``"136.00"``, ``"-54.00"``)."""
    sign = "-" if size < 0 else ""
    return f"{sign}{abs(size) // 100}.{abs(size) % 100:02d}"


def _ladder(levels: dict[int, int]) -> list[list[str]]:
    return [[_dollars(p), _count(s)] for p, s in sorted(levels.items())]


@define
class Recording:
    """What one gatherer received (:attr:`journal`) and the rows the pipeline made of it,
    per table."""

    gatherer_id: str
    journal: list[JournalRecord] = field(factory=list)
    trades: list[TradeRow] = field(factory=list)
    orderbook_deltas: list[DeltaRow] = field(factory=list)
    orderbook_snapshots: list[SnapshotRow] = field(factory=list)
    tickers: list[TickerRow] = field(factory=list)
    gaps: list[GapRow] = field(factory=list)
    market_lifecycle: list[LifecycleRow] = field(factory=list)

    def tables(self) -> dict[str, Sequence[Row]]:
        return {
            "trades": self.trades,
            "orderbook_deltas": self.orderbook_deltas,
            "orderbook_snapshots": self.orderbook_snapshots,
            "tickers": self.tickers,
            "gaps": self.gaps,
            "market_lifecycle": self.market_lifecycle,
        }


_CHANNELS = ("orderbook_delta", "trade", "ticker")
_LIFECYCLE = "market_lifecycle_v2"  # opened only when the truth has lifecycle events
_CHANNEL = {
    "delta": "orderbook_delta",
    "trade": "trade",
    "ticker": "ticker",
    "lifecycle": _LIFECYCLE,
}


@define
class _Conn:
    """One WebSocket connection of the gatherer: its frame counter and its subscription."""

    conn_id: int
    channel: str
    sid: int
    frame_no: int = 0
    seq: int = 0


@define
class _Gatherer:
    """Writes what one gatherer's sockets carry, as journal records."""

    gatherer_id: str
    conn_base: int
    out: list[JournalRecord] = field(factory=list)
    conns: dict[str, _Conn] = field(factory=dict)
    sessions: int = 0
    channels: tuple[str, ...] = _CHANNELS

    def _record(self, conn: _Conn, at: int, raw: bytes, direction: str = "in") -> None:
        frame_no = 0
        if direction == "in":
            conn.frame_no += 1
            frame_no = conn.frame_no
        self.out.append(
            JournalRecord(self.gatherer_id, conn.conn_id, frame_no, direction, at, at, "frame", raw)
        )

    def frame(self, channel: str, at: int, kind: str, msg: dict[str, Any]) -> None:
        """A data frame on ``channel``'s subscription (``seq`` on sequenced channels)."""
        conn = self.conns[channel]
        envelope: dict[str, Any] = {"type": kind, "sid": conn.sid}
        if channel != "ticker":  # tickers carry no seq (kalshi-api.md §2.4)
            conn.seq += 1
            envelope["seq"] = conn.seq
        envelope["msg"] = msg
        self._record(conn, at, orjson.dumps(envelope))

    def lose(self, channel: str) -> None:
        """A frame of ``channel`` the gatherer never received: it consumed its ``seq``."""
        if channel != "ticker":
            self.conns[channel].seq += 1

    def connect(self, at: int, books: dict[str, OrderBook]) -> None:
        """New connections for every channel, subscribed; the books' snapshots follow."""
        for conn in self.conns.values():
            self.out.append(
                JournalRecord(
                    self.gatherer_id, conn.conn_id, 0, "local", at, at, "disconnect",
                    detail={"reason": "connection lost"},
                )
            )  # fmt: skip
        self.sessions += 1
        for n, channel in enumerate(self.channels):
            conn_id = self.conn_base * 1_000_000 + 10 * self.sessions + n
            conn = self.conns[channel] = _Conn(conn_id, channel, sid=n + 1)
            self.out.append(
                JournalRecord(
                    self.gatherer_id, conn_id, 0, "local", at, at, "connect",
                    detail={"label": f"{channel}-0", "channels": [channel]},
                )
            )  # fmt: skip
            params: dict[str, Any] = {"channels": [channel]}
            if channel == "orderbook_delta":
                params["market_tickers"] = sorted(books)
            command = {"id": 1, "cmd": "subscribe", "params": params}
            self._record(conn, at, orjson.dumps(command), "out")
            reply = {"id": 1, "type": "subscribed", "msg": {"channel": channel, "sid": n + 1}}
            self._record(conn, at, orjson.dumps(reply))
        self.snapshots(at, books)

    def snapshots(self, at: int, books: dict[str, OrderBook]) -> None:
        for name in sorted(books):
            book = books[name]
            msg: dict[str, Any] = {"market_ticker": name, "market_id": f"id-{name}"}
            if book.yes:  # an empty side's key is left out (kalshi-api.md §3.1)
                msg["yes_dollars_fp"] = _ladder(book.yes)
            if book.no:
                msg["no_dollars_fp"] = _ladder(book.no)
            self.frame("orderbook_delta", at, "orderbook_snapshot", msg)

    def resnapshot(self, at: int, books: dict[str, OrderBook]) -> None:
        """``get_snapshot`` for every market, answered on the same sid (kalshi-api.md §2.2)."""
        conn = self.conns["orderbook_delta"]
        params = {"sids": [conn.sid], "market_tickers": sorted(books), "action": "get_snapshot"}
        command = {"id": 2, "cmd": "update_subscription", "params": params}
        self._record(conn, at, orjson.dumps(command), "out")
        self.snapshots(at + 1, books)

    def mismatch(self, at: int, since: dict[str, int], books: dict[str, OrderBook]) -> None:
        """The live books of ``since`` never matched their REST answers: the gatherer's
        ``gap`` markers (each an open ``book_invalid`` from ``since[ticker]``), then their
        resnapshot."""
        conn = self.conns["orderbook_delta"]
        for ticker in sorted(since):
            row = GapRow(
                start_ts=since[ticker],
                end_ts=None,
                gatherer_id=self.gatherer_id,
                conn_id=conn.conn_id,
                sid=conn.sid,
                ticker=ticker,
                kind="book_invalid",
                expected_seq=None,
                got_seq=None,
                detail=f"{ticker}: live book never matched its REST order book; resnapshot",
            )
            self.out.append(
                JournalRecord(
                    self.gatherer_id, conn.conn_id, 0, "local", at, at, "gap",
                    detail={"row": list(row)},
                )
            )  # fmt: skip
        self.resnapshot(at + 1, {t: books[t] for t in since})

    def event(self, event: Event, at: int) -> None:
        ts_ms = event.exchange_ts // 1000
        base = {"market_ticker": event.ticker, "market_id": f"id-{event.ticker}"}
        if event.kind == "delta":
            msg = {
                **base,
                "price_dollars": _dollars(event.price),
                "delta_fp": _count(event.size),
                "side": "yes" if event.side else "no",
                "ts_ms": ts_ms,
            }
            self.frame("orderbook_delta", at, "orderbook_delta", msg)
        elif event.kind == "trade":
            msg = {
                "trade_id": event.trade_id,
                "market_ticker": event.ticker,
                "yes_price_dollars": _dollars(event.price),
                "no_price_dollars": _dollars(100_000 - event.price),
                "count_fp": _count(event.size),
                "taker_side": "yes" if event.side else "no",
                "is_block_trade": False,
                "ts": ts_ms // 1000,
                "ts_ms": ts_ms,
            }
            self.frame("trade", at, "trade", msg)
        elif event.kind == "lifecycle":
            kind, body = event.message
            self.frame(_LIFECYCLE, at, kind, orjson.loads(body))
        else:
            msg = {
                **base,
                "price_dollars": _dollars(event.price),
                "yes_bid_dollars": _dollars(event.price),
                "yes_ask_dollars": _dollars(event.price + 1000),
                "volume_fp": _count(100 * event.index),
                "ts": ts_ms // 1000,
                "ts_ms": ts_ms,
            }
            self.frame("ticker", at, "ticker", msg)


def journal(
    truth: Truth,
    gatherer_id: str,
    misses: Sequence[tuple[int, int, str]] = (),
    *,
    latency_us: int = 700,
    conn_base: int = 1,
) -> list[JournalRecord]:
    """What ``gatherer_id``'s sockets received of ``truth``, ``misses`` lost, as journal
    records in receive order (``wall_us``: the receive time, µs). Frames arrive in exchange
    order, ``latency_us`` after their exchange time and never before the previous one."""
    books = {name: book.copy() for name, book in truth.start.items()}
    gatherer = _Gatherer(gatherer_id, conn_base)
    if any(e.kind == "lifecycle" for e in truth.events):
        gatherer.channels = (*_CHANNELS, _LIFECYCLE)
    gatherer.connect(T0 + latency_us, books)
    missing = {i: kind for first, last, kind in misses for i in range(first, last)}
    reconnects = {last for _, last, kind in misses if kind == "reconnect"}
    settles = {last - 1 for _, last, kind in misses if kind == "rest_mismatch"}
    stale = False  # order-book frames were lost since the last snapshot
    wrong: dict[str, int] = {}  # rest_mismatch: ticker -> receipt of its first lost delta
    received = T0 + latency_us
    for event in truth.events:
        received = max(received + 1, event.exchange_ts + latency_us)
        if event.kind == "delta":
            _apply(books[event.ticker], event)
        channel = _CHANNEL[event.kind]
        if missing.get(event.index) == "rest_mismatch":
            if event.kind == "delta" and event.size < 0:  # lost without a trace
                wrong.setdefault(event.ticker, received)
            else:
                gatherer.event(event, received)
            if event.index in settles and wrong:
                received += 1
                gatherer.mismatch(received, wrong, books)
                received += 1
                wrong = {}
            continue
        if event.index in missing:
            if missing[event.index] == "seq_gap":
                gatherer.lose(channel)
                stale = stale or channel == "orderbook_delta"
            continue
        if event.index in reconnects:  # lost with its connection; the new ones subscribe
            received += 1
            gatherer.connect(received, books)
            stale = False
            continue
        gatherer.event(event, received)
        if stale and channel == "orderbook_delta":  # this frame revealed the seq gap
            received += 1
            gatherer.resnapshot(received, books)
            received += 1
            stale = False
    return gatherer.out


def record(
    truth: Truth,
    gatherer_id: str,
    misses: Sequence[tuple[int, int, str]] = (),
    *,
    latency_us: int = 700,
    conn_base: int = 1,
) -> Recording:
    """The rows :class:`kalshi.replay.Replayer` (the pipeline) makes of :func:`journal`.
    Raises ``AssertionError`` when the pipeline found a problem with a frame."""
    rec = Recording(gatherer_id, journal(truth, gatherer_id, misses, latency_us=latency_us,
                                          conn_base=conn_base))  # fmt: skip
    replayer = Replayer()
    for item in rec.journal:
        for table, row in replayer.feed(item):
            getattr(rec, table).append(row)
    problems = replayer.stats.frame_problems
    assert not problems, f"the pipeline refused frames: {dict(problems)}"
    return rec


def _reveals(truth: Truth, first: int, last: int) -> int | None:
    """Index of the delta that reveals a ``seq_gap`` miss: the first delta from ``last``
    on, when the miss lost a delta (else ``None``: the order book saw no gap)."""
    if not any(e.kind == "delta" for e in truth.events[first:last]):
        return None
    return next((e.index for e in truth.events[last:] if e.kind == "delta"), None)


def _first_lost(truth: Truth, first: int, last: int) -> dict[str, int]:
    """A ``rest_mismatch`` miss: the index of each market's first silently lost delta."""
    out: dict[str, int] = {}
    for event in truth.events[first:last]:
        if event.kind == "delta" and event.size < 0:
            out.setdefault(event.ticker, event.index)
    return out


def covered(
    truth: Truth, misses: Sequence[Sequence[tuple[int, int, str]]], kind: str
) -> list[Event]:
    """Events of ``kind`` that at least one gatherer recorded where it can be trusted.

    A delta that reveals a ``seq_gap`` (:func:`_reveals`) is stored but untrustworthy (the
    book missed something before it); the event ``last`` of a ``reconnect`` miss was lost
    with its connection.
    """

    def missed(event: Event, first: int, last: int, how: str) -> bool:
        if how == "reconnect":
            return first <= event.index <= last
        if how == "rest_mismatch":  # from a market's first lost delta on: lost or cut
            wrong = _first_lost(truth, first, last).get(event.ticker)
            return event.kind == "delta" and wrong is not None and wrong <= event.index < last
        if kind == "delta" and event.index == _reveals(truth, first, last):
            return True
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
