"""Frame -> rows: the one code path shared by live gathering and ``kalshi replay``.

Pure (no I/O, no clock): the caller gives each frame its connection, number and receive time
and gets back an :class:`Outcome` saying which rows to write, which markets need a fresh
snapshot, and which control replies arrived. State kept here: the sequence number of every
subscription (per connection and ``sid``) and the live order book of every market.

Sequence rules (``docs/architecture.md``, kalshi-api.md §2.4): a subscription's counter
starts at 0 when its ``subscribed`` reply arrives, so its first sequenced frame must be seq 1
(frames on a sid whose reply was never seen, as in a partial capture, are not checked);
``seq`` equal to the last one or lower is a repeat (counted, not stored again);
higher than last + 1 is a gap (a ``gaps`` row; for an order-book subscription every market
on it is marked stale and needs a snapshot, for trades the window is backfilled over REST).
A delta that would make a level negative marks its market stale too. A crossed book (YES bid
>= YES ask, from a snapshot or after a delta) is counted per frame and recorded as a
``book_invalid`` gap; past ``crossed_book_frames`` frames of the market it is resnapshotted.

Connections recorded by someone else (a capture, ``kalshi/replay/source.py``) are declared
with :meth:`FrameProcessor.seq_rule`: their subscriptions open on their first frame (the
channel by message type, :data:`TYPE_CHANNEL`), and under the ``filtered`` rule a skipped
``seq`` is counted (``seq_skip``) but is no gap: the recorder dropped other markets' frames.
Every stale book keeps its cause in :attr:`FrameProcessor.stale_cause`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any, Protocol, TypeVar, cast

import msgspec
import orjson
from attrs import define, field

from kalshi.book import OrderBook
from kalshi.errors import BookError
from kalshi.models.book import BookDelta, BookSnapshot, Side
from kalshi.models.control import ErrorReply, Subscribed, SubscriptionList
from kalshi.models.frames import Invalid, Message
from kalshi.models.lifecycle import EventFeeUpdate, EventLifecycle, LifecycleEvent
from kalshi.models.rows import (
    DeltaRow,
    GapRow,
    LifecycleRow,
    Row,
    SnapshotRow,
    TickerRow,
    TradeRow,
)
from kalshi.models.ticker import Ticker
from kalshi.models.trade import Trade
from kalshi.models.units import DOLLAR
from kalshi.wire import decode_ws

__all__ = [
    "CONTROL_TYPES",
    "PROBLEM_COUNTS",
    "TYPE_CHANNEL",
    "FrameProcessor",
    "Outcome",
    "Watch",
    "book_json",
    "trade_row",
]

PROBLEM_COUNTS = frozenset(
    {
        "error_reply",  # an ``error`` frame (also counted as type ``error``)
        "duplicate",
        "seq_skip",
        "seq_gap",
        "book_invalid",
        "crossed_book_frames",
    }
)
"""Keys of :attr:`FrameProcessor.counts` that flag frames already counted by their type."""

CONTROL_TYPES = frozenset({"subscribed", "ok", "error", "unsubscribed"})
_RETIRING = frozenset({"determined", "settled"})
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
_LIFECYCLE_TYPES = frozenset(
    {"market_lifecycle_v2", "multivariate_market_lifecycle", "event_lifecycle", "event_fee_update"}
)


class Outcome(msgspec.Struct, gc=False):
    """What one frame means. ``rows`` are ``(table, row)`` in the order to write them.

    A ``msgspec`` struct: one is built per frame, and its constructor is compiled."""

    rows: list[tuple[str, Row]] = msgspec.field(default_factory=list)
    message: Message | None = None
    # invalid, unknown_type, duplicate, book, book_invalid, crossed, error
    problem: str | None = None
    detail: str = ""
    resnapshot: list[str] = msgspec.field(default_factory=list)  # books to fetch again
    backfill_from: int | None = None  # µs: trades since then may be missing (trade seq gap)
    lifecycle: LifecycleEvent | EventLifecycle | None = None
    gap: bool = False
    skip: bool = False  # a skipped seq on a filtered subscription (not a gap)


# The hot rows are built as ``tuple.__new__(RowType, values)`` in field order: the same
# NamedTuple as ``RowType(field=...)`` without its Python ``__new__`` (a keyword call cost
# about five times as much, in a row a frame; tests/unit/test_rows_by_keyword.py checks each
# against the keyword form).
_R = TypeVar("_R", bound=tuple[Any, ...])


class _RowNew(Protocol):
    def __call__(self, cls: type[_R], values: tuple[Any, ...], /) -> _R: ...


_row = cast(_RowNew, tuple.__new__)
_YES = Side.YES  # a module constant: an Enum member read through its class costs ~40 ns


def book_json(levels: tuple[tuple[int, int], ...]) -> str:
    """``((price, size), ...)`` as the JSON column ``[[price,size],...]``: orjson writes a
    tuple as an array, so the levels go as they are (no list per level)."""
    return orjson.dumps(levels).decode()


def trade_row(
    trade: Trade,
    gatherer_id: str,
    received_at: int,
    source: str,
    conn_id: int = 0,
    frame_no: int = 0,
    seq: int | None = None,
) -> TradeRow:
    return _row(
        TradeRow,
        (  # TradeRow's fields, in order
            trade.exchange_ts,
            received_at,
            gatherer_id,
            trade.ticker,
            trade.trade_id,
            trade.yes_price,  # price
            trade.count,  # size
            trade.taker_side is _YES,  # taker_side
            trade.is_block_trade,
            source,
            conn_id,
            frame_no,
            seq,
        ),
    )


@define
class _Sub:
    channel: str
    last_seq: int | None = None
    last_ts: int = 0  # received_at of the last in-order frame (µs)
    tickers: set[str] = field(factory=set)
    filtered: bool = False  # seq jumps are other markets' frames, not losses


@define(eq=False)
class Watch:
    """A market's live book watched while a REST order book of it is in flight
    (:meth:`FrameProcessor.watch`): a REST book carries no ``seq`` (kalshi-api.md §4.5), so
    it is some state the book passed through between the request's send and shortly after
    its reply (the deltas of that moment may still be on their way). ``states``: copies of
    the book at the send and after each change until the answer came; then ``target`` (the
    answer) and ``matched`` once the book equals it. ``since``: when the watch began (µs,
    the gatherer's wall clock: the request's send), where a book never matched is known
    wrong from (:meth:`FrameProcessor.mismatch`). ``due``: when an answer not matched at
    its reply is settled (the caller's clock, s; set by the caller, none before the reply)."""

    since: int = 0
    states: list[OrderBook] = field(factory=list)
    target: OrderBook | None = None
    matched: bool = False
    due: float | None = None

    def seen(self, book: OrderBook) -> None:
        if self.target is None:
            self.states.append(book.copy())
        elif not self.matched and book == self.target:
            self.matched = True

    def answered(self, polled: OrderBook, live: OrderBook | None) -> bool:
        """The REST answer came: ``True`` when the live book was in its state at some point
        from the send to now; else it is watched for until :meth:`FrameProcessor.unwatch`."""
        if (live is not None and live == polled) or any(s == polled for s in self.states):
            self.matched = True
        else:
            self.target = polled
        self.states.clear()
        return self.matched


class FrameProcessor:
    """Turns raw frames into rows for one gatherer. One instance serves every connection."""

    def __init__(self, gatherer_id: str, *, crossed_book_frames: int = 2) -> None:
        self.gatherer_id = gatherer_id
        # A book crossed (YES bid >= YES ask) for more than this many of its frames is
        # resnapshotted; a shorter cross may be deltas of one match arriving one by one.
        self.crossed_book_frames = crossed_book_frames
        self.crossed: dict[str, int] = {}  # ticker -> frames it has been crossed for
        # ticker -> its open book_invalid gaps: closed (a copy with end_ts) when the book
        # is valid again, by a snapshot or (not stale) by the delta that ends a cross
        self.invalid: dict[str, list[GapRow]] = {}
        self.books: dict[str, OrderBook] = {}
        self.stale: set[str] = set()  # books we do not trust until the next snapshot
        self.stale_cause: dict[str, str] = {}  # why each stale book is stale
        self.retired: set[str] = set()  # dropped markets: late deltas are stored, not applied
        self._subs: dict[tuple[int, int], _Sub] = {}
        # (conn_id, command id) -> channels of a subscribe sent: names the channel of an
        # older ``subscribed`` reply that carries no msg
        self._subscribes: dict[tuple[int, int], list[str]] = {}
        # conn_id -> channels subscribed by a reply that gave no sid: the first frame of
        # that channel on an unknown sid names it (and is checked as seq 1)
        self._unnamed: dict[int, set[str]] = {}
        self._rules: dict[int, tuple[bool, bool]] = {}  # conn_id -> (implicit, filtered)
        # by message type (``invalid`` and ``unknown_type`` for frames without one), plus
        # the problems of PROBLEM_COUNTS (frames already counted by their type)
        self.counts: Counter[str] = Counter()
        self.market_messages: Counter[str] = Counter()
        self.watches: dict[str, Watch] = {}  # markets whose REST book is being compared

    def watch(self, ticker: str, since: int = 0) -> Watch:
        """Start recording the states of ``ticker``'s live book (:class:`Watch`), from its
        current one (none while it has no book); ``since``: now (µs, wall clock)."""
        w = self.watches[ticker] = Watch(since)
        book = self.books.get(ticker)
        if book is not None:
            w.seen(book)
        return w

    def unwatch(self, tickers: Collection[str] | None = None) -> tuple[list[str], int]:
        """End the watches of ``tickers`` (every watch when ``None``): the markets whose REST
        answer the live book never matched and whose book is trusted now, in ticker order,
        and how many answers it matched after their reply."""
        ended = {
            t: self.watches.pop(t)
            for t in (list(self.watches) if tickers is None else tickers)
            if t in self.watches
        }
        out = sorted(
            t
            for t, w in ended.items()
            if w.target is not None and not w.matched and t in self.books and t not in self.stale
        )
        late = sum(1 for w in ended.values() if w.target is not None and w.matched)
        return out, late

    def mismatch(self, ticker: str, since: int, detail: str) -> GapRow | None:
        """``ticker``'s live book never passed through its REST answer (kalshi-api.md §4.5,
        :meth:`unwatch`): it is known wrong from ``since`` (µs, the request's send). Returns
        the open ``book_invalid`` gap of the connection and ``sid`` that carry the market
        (None when no order-book subscription does). The caller journals it (a ``gap``
        marker) and applies it (:meth:`outside_gap`: the book stale, the gap ended by the
        market's next snapshot, as a crossed book's) before any later frame, so a replay
        of the marker does the same at the same point."""
        where = next(
            (
                key
                for key, sub in self._subs.items()
                if sub.channel == "orderbook_delta" and ticker in sub.tickers
            ),
            None,
        )
        if where is None:
            return None
        row = GapRow(
            start_ts=since,
            end_ts=None,
            gatherer_id=self.gatherer_id,
            conn_id=where[0],
            sid=where[1],
            ticker=ticker,
            kind="book_invalid",
            expected_seq=None,
            got_seq=None,
            detail=detail,
        )
        return row

    def outside_gap(self, row: GapRow) -> None:
        """A gap row made outside :meth:`process` (live: :meth:`mismatch`, a clean stop's
        or a restart's end of an open gap; replay: every ``gap`` marker). An open
        ``book_invalid`` of a market on that connection's order-book subscription marks
        the book stale and is closed by its next snapshot (:attr:`invalid`); a closed
        ``book_invalid`` leaves :attr:`invalid` (ended outside the pipeline: a clean stop,
        a restart); any other row changes nothing."""
        ticker = row.ticker
        if row.kind != "book_invalid" or ticker is None:
            return
        if row.end_ts is not None:
            rows = self.invalid.get(ticker)
            if rows:
                key = (row.start_ts, row.conn_id, row.sid)
                rows[:] = [r for r in rows if (r.start_ts, r.conn_id, r.sid) != key]
                if not rows:
                    del self.invalid[ticker]
            return
        sub = self._subs.get((row.conn_id, row.sid or 0))
        if sub is None or sub.channel != "orderbook_delta" or ticker not in sub.tickers:
            return  # not on a live book (a crossed REST book's gap, conn 0)
        self.crossed.pop(ticker, None)
        self._mark_stale([ticker], row.detail)
        self.invalid.setdefault(ticker, []).append(row)

    # --- connection events ------------------------------------------------------------

    def seq_rule(self, conn_id: int, *, filtered: bool, implicit: bool) -> None:
        """How to read a connection's frames. ``implicit``: its ``subscribed`` replies were
        not recorded, so a frame with an unknown ``sid`` opens that subscription;
        ``filtered``: a skipped ``seq`` is not a gap (``docs/replay.md``, "Captures")."""
        self._rules[conn_id] = (implicit, filtered)

    def continue_connection(self, old: int, new: int) -> None:
        """Connection ``new`` goes on where ``old`` stopped (a capture session read on
        from the next file, ``docs/replay.md``, "Identity of a capture's rows"): its
        subscriptions, their ``seq`` and its sequence rule move to ``new``; books are
        per market and go on as they are."""
        for key in [key for key in self._subs if key[0] == old]:
            self._subs[new, key[1]] = self._subs.pop(key)
        for key in [key for key in self._subscribes if key[0] == old]:
            self._subscribes[new, key[1]] = self._subscribes.pop(key)
        if old in self._unnamed:
            self._unnamed[new] = self._unnamed.pop(old)
        if old in self._rules:
            self._rules[new] = self._rules.pop(old)

    def _mark_stale(self, tickers: list[str] | set[str], cause: str) -> None:
        for ticker in tickers:
            if ticker not in self.stale:  # the first cause since the snapshot is the real one
                self.stale.add(ticker)
                self.stale_cause[ticker] = cause

    def forget_connection(self, conn_id: int) -> list[str]:
        """The connection is gone: drop its subscriptions; returns the tickers whose books
        lived on it (they stay known but are stale until a snapshot arrives elsewhere)."""
        orphans: list[str] = []
        for key in [key for key in self._subs if key[0] == conn_id]:
            sub = self._subs.pop(key)
            orphans.extend(sub.tickers)
        for key in [key for key in self._subscribes if key[0] == conn_id]:
            del self._subscribes[key]
        self._unnamed.pop(conn_id, None)
        self._mark_stale(orphans, f"disconnect: connection {conn_id} ended")
        self._rules.pop(conn_id, None)
        return orphans

    def drop_market(self, ticker: str) -> None:
        """No longer recorded (settled, or moved off this process)."""
        self.books.pop(ticker, None)
        self.stale.discard(ticker)
        self.stale_cause.pop(ticker, None)
        self.retired.add(ticker)
        for sub in self._subs.values():
            sub.tickers.discard(ticker)

    def sent(self, raw: bytes | str, conn_id: int = 0) -> None:
        """A command this gatherer sent on ``conn_id``: ``delete_markets`` retires those
        markets' books (their late deltas are stored, not applied); a ``subscribe`` is
        remembered by id, for a reply that does not name its channel. Live and replay both
        call this."""
        data = raw.encode() if isinstance(raw, str) else raw
        if b'"subscribe"' in data:
            self._remember_subscribe(data, conn_id)
            return
        if b"delete_markets" not in data:
            return
        try:
            command: Any = orjson.loads(data)
            params = command.get("params") or {}
            tickers = (
                params.get("market_tickers") or []
                if params.get("action") == "delete_markets"
                else []
            )
        except (orjson.JSONDecodeError, AttributeError):
            return
        for ticker in tickers:
            if isinstance(ticker, str):
                self.drop_market(ticker)

    def _remember_subscribe(self, data: bytes, conn_id: int) -> None:
        try:
            command: Any = orjson.loads(data)
            ident = command.get("id")
            channels = (command.get("params") or {}).get("channels") or []
        except (orjson.JSONDecodeError, AttributeError):
            return
        if command.get("cmd") == "subscribe" and type(ident) is int and type(channels) is list:
            self._subscribes[conn_id, ident] = [c for c in channels if isinstance(c, str)]

    def subscription(self, conn_id: int, sid: int) -> str | None:
        sub = self._subs.get((conn_id, sid))
        return sub.channel if sub else None

    # --- the hot path -------------------------------------------------------------------

    def process(self, conn_id: int, frame_no: int, received_at: int, raw: bytes | str) -> Outcome:
        decoded = decode_ws(raw)
        if type(decoded) is not Message:
            if isinstance(decoded, Invalid):
                self.counts["invalid"] += 1
                return Outcome(problem="invalid", detail=decoded.error)
            self.counts["unknown_type"] += 1
            return Outcome(problem="unknown_type", detail=str(decoded.type))
        msg = decoded
        out = Outcome(message=msg)
        kind = msg.type
        self.counts[kind] += 1
        if kind in CONTROL_TYPES:  # replies: subscriptions open, close, are listed
            return self._control(conn_id, received_at, msg, out)
        # a data message (neither ``subscribed`` nor a SubscriptionList, an ``ok``'s body)
        sid = msg.sid
        sub = self._subs.get((conn_id, sid)) if sid is not None else None
        if sub is None and sid is not None:
            sub = self._opened(conn_id, sid, kind, received_at)
        seq = msg.seq
        if sub is not None and seq is not None:
            last = sub.last_seq
            if last is not None and seq == last + 1:  # in order: the common case, inline
                sub.last_seq, sub.last_ts = seq, received_at
            elif not self._sequence(conn_id, msg, sub, received_at, out):
                return out
        base = (received_at, self.gatherer_id)
        body = msg.body
        if isinstance(body, BookDelta):
            self._delta(body, base, conn_id, frame_no, msg, out)
        elif isinstance(body, BookSnapshot):
            self._snapshot(body, base, conn_id, frame_no, msg, sub, out)
        elif isinstance(body, Trade):
            self.market_messages[body.ticker] += 1
            out.rows.append(
                (
                    "trades",
                    trade_row(
                        body, self.gatherer_id, received_at, "ws", conn_id, frame_no, msg.seq
                    ),
                )
            )
        elif isinstance(body, Ticker):
            self.market_messages[body.ticker] += 1
            out.rows.append(("tickers", _ticker_row(body, base, conn_id, frame_no)))
        elif kind in _LIFECYCLE_TYPES:
            out.rows.append(("market_lifecycle", _lifecycle_row(msg, raw, base, conn_id, frame_no)))
            if isinstance(body, LifecycleEvent | EventLifecycle):
                out.lifecycle = body
            if isinstance(body, LifecycleEvent) and body.event_type in _RETIRING:
                self.drop_market(body.ticker)
        return out

    def _control(self, conn_id: int, received_at: int, msg: Message, out: Outcome) -> Outcome:
        """:meth:`process` of a reply (a type in :data:`CONTROL_TYPES`)."""
        if msg.type == "subscribed":
            body = msg.body
            assert isinstance(body, Subscribed)
            channel = body.channel
            if channel is None:  # the older shape: the command it answers names it
                channels = self._subscribes.get((conn_id, msg.id or 0), [])
                channel = channels[0] if len(channels) == 1 else None
            # A fresh sid's first sequenced frame is seq 1 (kalshi-api.md §2.4), so the
            # counter starts at 0 and that frame is checked like any other. A repeated
            # ``subscribed`` for a live sid (an idempotent re-subscribe) keeps its counter.
            filtered = self._rules.get(conn_id, (False, False))[1]
            if body.sid is not None and channel is not None:
                self._subs.setdefault(
                    (conn_id, body.sid), _Sub(channel, 0, received_at, set(), filtered)
                )
            elif channel is not None:
                self._unnamed.setdefault(conn_id, set()).add(channel)
            return out
        if isinstance(msg.body, SubscriptionList):
            # sids learned late (a ``subscribed`` without one): frames may already have
            # come, so the first one seen sets the counter
            filtered = self._rules.get(conn_id, (False, False))[1]
            for info in msg.body.subscriptions:
                self._subs.setdefault(
                    (conn_id, info.sid), _Sub(info.channel, None, received_at, set(), filtered)
                )
            return out
        sub = self._subs.get((conn_id, msg.sid)) if msg.sid is not None else None
        if sub is None and msg.sid is not None:
            sub = self._opened(conn_id, msg.sid, msg.type, received_at)
        seq = msg.seq
        if sub is not None and seq is not None:
            last = sub.last_seq
            if last is not None and seq == last + 1:  # in order: the common case, inline
                sub.last_seq, sub.last_ts = seq, received_at
            elif not self._sequence(conn_id, msg, sub, received_at, out):
                return out
        if msg.type == "unsubscribed" and msg.sid is not None:
            gone = self._subs.pop((conn_id, msg.sid), None)
            if gone is not None:
                self._mark_stale(gone.tickers, f"unsubscribed (sid {msg.sid})")
            return out
        if isinstance(msg.body, ErrorReply):
            self.counts["error_reply"] += 1
            out.problem, out.detail = "error", f"{msg.body.code} {msg.body.message}"
        return out

    def _opened(self, conn_id: int, sid: int, kind: str, received_at: int) -> _Sub | None:
        """The subscription of a data frame on a ``sid`` not seen yet: named by a
        ``subscribed`` that gave no sid (:meth:`_name`), or opened by the frame on a
        connection whose replies were not recorded (:meth:`seq_rule`); else None."""
        sub = None
        if conn_id in self._unnamed:
            sub = self._name(conn_id, sid, kind, received_at)
        if sub is None and kind in TYPE_CHANNEL:
            rule = self._rules.get(conn_id)
            if rule is not None and rule[0]:
                sub = _Sub(TYPE_CHANNEL[kind], None, received_at, set(), rule[1])
                self._subs[(conn_id, sid)] = sub
        return sub

    def _name(self, conn_id: int, sid: int, kind: str, received_at: int) -> _Sub | None:
        """The subscription of a sid first seen in a data frame, when a ``subscribed``
        without a sid left its channel waiting on this connection."""
        channel = TYPE_CHANNEL.get(kind)
        waiting = self._unnamed[conn_id]
        if channel not in waiting:
            return None
        waiting.discard(channel)
        if not waiting:
            del self._unnamed[conn_id]
        filtered = self._rules.get(conn_id, (False, False))[1]
        sub = self._subs[conn_id, sid] = _Sub(channel, 0, received_at, set(), filtered)
        return sub

    def _sequence(
        self, conn_id: int, msg: Message, sub: _Sub, received_at: int, out: Outcome
    ) -> bool:
        """Check ``msg.seq`` on its subscription; False when the frame is a repeat."""
        seq = msg.seq
        assert seq is not None
        last = sub.last_seq
        if last is not None and seq <= last:
            self.counts["duplicate"] += 1
            out.problem, out.detail = "duplicate", f"sid {msg.sid} seq {seq} after {last}"
            return False
        if last is not None and seq != last + 1 and sub.filtered:
            self.counts["seq_skip"] += 1
            out.skip = True
        elif last is not None and seq != last + 1:
            self.counts["seq_gap"] += 1
            out.gap = True
            tickers = sorted(sub.tickers) if sub.channel == "orderbook_delta" else []
            out.rows.append(
                (
                    "gaps",
                    GapRow(
                        start_ts=sub.last_ts,
                        end_ts=received_at,
                        gatherer_id=self.gatherer_id,
                        conn_id=conn_id,
                        sid=msg.sid,
                        ticker=None,
                        kind="seq_gap",
                        expected_seq=last + 1,
                        got_seq=seq,
                        detail=f"{sub.channel}: {seq - last - 1} frame(s) missing"
                        + (f"; resnapshot {len(tickers)} market(s)" if tickers else ""),
                    ),
                )
            )
            if tickers:
                missing = f"seq {last + 1}" if seq == last + 2 else f"seq {last + 1}-{seq - 1}"
                self._mark_stale(tickers, f"sequence gap: sid {msg.sid} {missing} missing")
                out.resnapshot.extend(tickers)
            if sub.channel == "trade":
                out.backfill_from = sub.last_ts
        sub.last_seq = seq
        sub.last_ts = received_at
        return True

    def _delta(
        self,
        delta: BookDelta,
        base: tuple[int, str],
        conn_id: int,
        frame_no: int,
        msg: Message,
        out: Outcome,
    ) -> None:
        received_at, gatherer_id = base
        ticker = delta.ticker
        self.market_messages[ticker] += 1
        exchange_ts = delta.exchange_ts
        out.rows.append(
            (
                "orderbook_deltas",
                _row(
                    DeltaRow,
                    (  # DeltaRow's fields, in order
                        exchange_ts if exchange_ts is not None else received_at,
                        received_at,
                        gatherer_id,
                        ticker,
                        delta.side is _YES,  # side
                        delta.price,
                        delta.delta,  # size_delta
                        conn_id,
                        frame_no,
                        msg.sid or 0,
                        msg.seq or 0,
                    ),
                ),
            )
        )
        if ticker in self.stale or ticker in self.retired:
            return
        book = self.books.get(ticker)
        if book is None:
            self._mark_stale([ticker], "delta before any snapshot")
            out.resnapshot.append(ticker)
            out.problem, out.detail = "book", f"{ticker}: delta before any snapshot"
            return
        try:
            book.apply_delta(delta)
        except BookError as exc:
            self.counts["book_invalid"] += 1
            self.crossed.pop(ticker, None)
            self._mark_stale([ticker], f"invalid delta: {exc}")
            out.resnapshot.append(ticker)
            out.problem, out.detail = "book_invalid", str(exc)
            out.rows.append(("gaps", self._invalid_gap(base, conn_id, msg, ticker, str(exc))))
            return
        if (
            ticker in self.crossed
            or ticker in self.invalid
            or (delta.delta > 0 and _crosses(book, delta))
        ):
            self._crossing(ticker, book, base, conn_id, msg, out)
        if self.watches and ticker in self.watches:
            self.watches[ticker].seen(book)

    def _crossing(
        self,
        ticker: str,
        book: OrderBook,
        base: tuple[int, str],
        conn_id: int,
        msg: Message,
        out: Outcome,
    ) -> None:
        """After a delta that may cross ``book``: count every crossed frame (problem
        ``crossed``), a ``book_invalid`` gap row when a cross begins, and a resnapshot
        once it lasts more than ``crossed_book_frames`` frames of the market."""
        bid, ask = book.best_yes_bid(), book.best_yes_ask()
        if bid is None or ask is None or bid[0] < ask[0]:
            self.crossed.pop(ticker, None)
            if ticker not in self.stale:  # valid again: its open gaps end here
                self._close_invalid(ticker, base[0], out)
            return
        frames = self.crossed[ticker] = self.crossed.get(ticker, 0) + 1
        self.counts["crossed_book_frames"] += 1
        detail = f"{ticker}: crossed book: yes bid {bid[0]} >= yes ask {ask[0]}"
        if out.problem is None:
            out.problem, out.detail = "crossed", detail
        if frames == 1:
            out.rows.append(("gaps", self._invalid_gap(base, conn_id, msg, ticker, detail)))
        if frames > self.crossed_book_frames:
            del self.crossed[ticker]
            self._mark_stale([ticker], f"crossed for {frames} frames")
            out.resnapshot.append(ticker)

    def _invalid_gap(
        self, base: tuple[int, str], conn_id: int, msg: Message, ticker: str, detail: str
    ) -> GapRow:
        received_at, gatherer_id = base
        row = GapRow(
            start_ts=received_at,
            end_ts=None,
            gatherer_id=gatherer_id,
            conn_id=conn_id,
            sid=msg.sid,
            ticker=ticker,
            kind="book_invalid",
            expected_seq=None,
            got_seq=msg.seq,
            detail=detail,
        )
        self.invalid.setdefault(ticker, []).append(row)
        return row

    def _close_invalid(self, ticker: str, at: int, out: Outcome) -> None:
        """End ``ticker``'s open ``book_invalid`` gaps at ``at`` (µs): copies with the end,
        which the store writes over the stored rows' NULL end."""
        for row in self.invalid.pop(ticker, ()):
            out.rows.append(("gaps", row._replace(end_ts=max(at, row.start_ts))))

    def _snapshot(
        self,
        snap: BookSnapshot,
        base: tuple[int, str],
        conn_id: int,
        frame_no: int,
        msg: Message,
        sub: _Sub | None,
        out: Outcome,
    ) -> None:
        received_at, gatherer_id = base
        ticker = snap.ticker
        self.market_messages[ticker] += 1
        out.rows.append(
            (
                "orderbook_snapshots",
                _row(
                    SnapshotRow,
                    (  # SnapshotRow's fields, in order
                        received_at,  # snapshot_ts
                        None,  # exchange_ts
                        received_at,
                        gatherer_id,
                        ticker,
                        "ws",  # source
                        book_json(snap.yes),  # yes_bids
                        book_json(snap.no),  # no_bids
                        conn_id,
                        frame_no,
                        msg.sid,
                        msg.seq,
                    ),
                ),
            )
        )
        if sub is not None:
            sub.tickers.add(ticker)
        try:
            book = OrderBook.from_snapshot(snap)
        except BookError as exc:
            self.counts["book_invalid"] += 1
            self._mark_stale([ticker], f"invalid snapshot: {exc}")
            out.problem, out.detail = "book", str(exc)
            return
        self.books[ticker] = book
        if self.watches and ticker in self.watches:
            self.watches[ticker].seen(book)
        self.stale.discard(ticker)
        self.stale_cause.pop(ticker, None)
        self.retired.discard(ticker)
        self.crossed.pop(ticker, None)
        self._close_invalid(ticker, received_at, out)  # a fresh book: the gap is over
        bid, ask = book.best_yes_bid(), book.best_yes_ask()
        if bid is not None and ask is not None and bid[0] >= ask[0]:
            # the exchange's own state: counted and recorded; asking again would loop
            self.counts["crossed_book_frames"] += 1
            detail = f"{ticker}: crossed snapshot: yes bid {bid[0]} >= yes ask {ask[0]}"
            out.problem, out.detail = "crossed", detail
            out.rows.append(("gaps", self._invalid_gap(base, conn_id, msg, ticker, detail)))


def _crosses(book: OrderBook, delta: BookDelta) -> bool:
    """Whether size added by ``delta`` crosses the opposite side: a YES bid at p meets a
    NO bid at q when p + q >= $1 (kalshi-api.md §4.5: YES ask = 1 - best NO bid)."""
    opposite = book.no if delta.side is _YES else book.yes
    return bool(opposite) and delta.price + max(opposite) >= DOLLAR


def _ticker_row(t: Ticker, base: tuple[int, str], conn_id: int, frame_no: int) -> TickerRow:
    received_at, gatherer_id = base
    return _row(
        TickerRow,
        (  # TickerRow's fields, in order
            t.exchange_ts,
            received_at,
            gatherer_id,
            t.ticker,
            t.yes_bid,
            t.yes_ask,
            t.price,  # last_price
            t.volume,
            t.open_interest,
            t.dollar_volume,
            t.dollar_open_interest,
            t.yes_bid_size,
            t.yes_ask_size,
            t.last_trade_size,
            conn_id,
            frame_no,
            1,  # occurrence: 1 in a gatherer's table (the deduplicator computes it)
        ),
    )


def _lifecycle_row(
    msg: Message, raw: bytes | str, base: tuple[int, str], conn_id: int, frame_no: int
) -> LifecycleRow:
    received_at, gatherer_id = base
    body = msg.body
    frame: Any = orjson.loads(raw)
    payload = orjson.dumps(frame.get("msg")).decode()
    if isinstance(body, LifecycleEvent):
        ticker, kind = body.ticker, body.event_type
        when = body.settled_ts or body.determination_ts or None
    elif isinstance(body, EventLifecycle):
        ticker, kind, when = body.event_ticker, "event_created", None
    else:
        assert isinstance(body, EventFeeUpdate)
        ticker, kind, when = body.event_ticker, "event_fee_update", None
    return LifecycleRow(
        exchange_ts=when or received_at,
        received_at=received_at,
        gatherer_id=gatherer_id,
        ticker=ticker,
        event_type=kind,
        payload=payload,
        conn_id=conn_id,
        frame_no=frame_no,
        seq=msg.seq,
    )
