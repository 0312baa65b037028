"""The compiled path for the four hot message shapes: ``orderbook_delta``, ``trade``,
``ticker`` and ``orderbook_snapshot`` in their current form (kalshi-api.md §3.2-§3.5).

One ``msgspec`` decoder reads the envelope and the body into typed structs at compiled
speed (unknown fields ignored); prices and sizes are then parsed exactly into fixed-point
integers (:mod:`kalshi.models.units`). :func:`decode_fast` returns ``None`` whenever the
frame is anything else: another type, a legacy shape, a wrong type or a bad value. The
caller then runs the general decoder, which accepts the legacy shapes and names the field
and value of a bad frame, so both paths agree on every input (tests/unit/test_wire_fast.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from kalshi.errors import DecodeError
from kalshi.models.book import BookDelta, BookSnapshot, Level, Side
from kalshi.models.frames import Message
from kalshi.models.ticker import Ticker
from kalshi.models.trade import Trade
from kalshi.models.units import PRICE_SCALE, parse_price, parse_size
from kalshi.models.units import _price_cache as _PRICES
from kalshi.models.units import _size_cache as _SIZES
from kalshi.wire._fields import finest_us

__all__ = ["decode_fast"]

_SIDES = {"yes": Side.YES, "no": Side.NO}

# int64 only: the general decoder's JSON parser (orjson) turns integers beyond int64/uint64
# into floats, which it refuses; msgspec would take them, so they are left to it.
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Fallback(Exception):
    """The frame is not the current shape: the general decoder decides."""


class _Delta(msgspec.Struct, gc=False):
    market_ticker: str
    price_dollars: str
    delta_fp: str
    side: str
    ts_ms: Int
    market_id: str = ""
    ts: Any = None  # RFC 3339, with microseconds on real frames (finest_us)


class _Trade(msgspec.Struct, gc=False):
    trade_id: str
    market_ticker: str
    yes_price_dollars: str
    count_fp: str
    ts_ms: Int
    no_price_dollars: str | None = None
    no_price: Any = None  # legacy cents: the general decoder
    taker_outcome_side: str | None = None
    taker_side: str | None = None
    is_block_trade: bool | None = None


class _Ticker(msgspec.Struct, gc=False):
    market_ticker: str
    ts_ms: Int
    market_id: str = ""
    ts: Any = None  # seconds, or RFC 3339 (finest_us)
    time: Any = None  # RFC 3339 (finest_us)
    price_dollars: str | None = None
    yes_bid_dollars: str | None = None
    yes_ask_dollars: str | None = None
    volume_fp: str | None = None
    open_interest_fp: str | None = None
    dollar_volume: Int | None = None
    dollar_open_interest: Int | None = None
    yes_bid_size_fp: str | None = None
    yes_ask_size_fp: str | None = None
    last_trade_size_fp: str | None = None
    # legacy names: when one is set where the current one is not, the general decoder
    price: Any = None
    yes_bid: Any = None
    yes_ask: Any = None
    volume: Any = None
    open_interest: Any = None


class _Snapshot(msgspec.Struct, gc=False):
    market_ticker: str
    market_id: str = ""
    yes_dollars_fp: list[tuple[str, str]] | None = None
    no_dollars_fp: list[tuple[str, str]] | None = None
    # legacy ladders: the general decoder
    yes_dollars: Any = None
    no_dollars: Any = None
    yes: Any = None
    no: Any = None


class _Envelope(msgspec.Struct, tag_field="type", gc=False):
    sid: Int | None = None
    seq: Int | None = None
    id: Int | None = None


class _DeltaFrame(_Envelope, tag="orderbook_delta"):
    msg: _Delta | None = None


class _TradeFrame(_Envelope, tag="trade"):
    msg: _Trade | None = None


class _TickerFrame(_Envelope, tag="ticker"):
    msg: _Ticker | None = None


class _SnapshotFrame(_Envelope, tag="orderbook_snapshot"):
    msg: _Snapshot | None = None


_DECODER = msgspec.json.Decoder(_DeltaFrame | _TradeFrame | _TickerFrame | _SnapshotFrame)


def _delta(m: _Delta) -> BookDelta:
    side = _SIDES.get(m.side)
    if side is None:
        raise _Fallback
    price = _PRICES.get(m.price_dollars)  # the memos of parse_price/parse_size, inline
    size = _SIZES.get(m.delta_fp)
    return BookDelta(
        m.market_ticker,
        m.market_id,
        side,
        price if price is not None else parse_price(m.price_dollars),
        size if size is not None else parse_size(m.delta_fp),
        finest_us(m.ts_ms, m.ts),
    )


def _trade(m: _Trade) -> Trade:
    yes_price = parse_price(m.yes_price_dollars)
    if m.no_price_dollars is not None:
        no_price = parse_price(m.no_price_dollars)
    elif m.no_price is not None:
        raise _Fallback
    else:
        no_price = PRICE_SCALE - yes_price
    taker = _SIDES.get(m.taker_outcome_side if m.taker_outcome_side is not None else m.taker_side)  # type: ignore[arg-type]  # None is not a key
    if taker is None:
        raise _Fallback
    return Trade(
        trade_id=m.trade_id,
        ticker=m.market_ticker,
        yes_price=yes_price,
        no_price=no_price,
        count=parse_size(m.count_fp),
        taker_side=taker,
        exchange_ts=m.ts_ms * 1000,  # whole milliseconds already (trade_time)
        is_block_trade=bool(m.is_block_trade),
    )


def _price(text: str | None, legacy: Any) -> int | None:
    """An optional price: ``""`` and absent are None (kalshi-api.md §3.3)."""
    if text:
        value = _PRICES.get(text)  # the memo of parse_price, without the call
        return value if value is not None else parse_price(text)
    if text is None and legacy is not None:
        raise _Fallback
    return None


def _size(text: str | None, legacy: Any = None) -> int | None:
    if text:
        value = _SIZES.get(text)
        return value if value is not None else parse_size(text)
    if text is None and legacy is not None:
        raise _Fallback
    return None


def _ticker(m: _Ticker) -> Ticker:
    """The current form (no legacy name set) read inline, the memos of parse_price and
    parse_size without a call per field (a third of the frame's decode); a frame with a
    legacy name takes :func:`_ticker_by_field`, the same values field by field."""
    if (
        m.price is not None
        or m.yes_bid is not None
        or m.yes_ask is not None
        or m.volume is not None
        or m.open_interest is not None
    ):
        return _ticker_by_field(m)
    prices, sizes = _PRICES, _SIZES
    out: list[int | None] = []
    for text in (m.price_dollars, m.yes_bid_dollars, m.yes_ask_dollars):
        value = None
        if text:
            value = prices.get(text)
            if value is None:
                value = parse_price(text)
        out.append(value)
    for text in (
        m.volume_fp,
        m.open_interest_fp,
        m.yes_bid_size_fp,
        m.yes_ask_size_fp,
        m.last_trade_size_fp,
    ):
        value = None
        if text:
            value = sizes.get(text)
            if value is None:
                value = parse_size(text)
        out.append(value)
    price, yes_bid, yes_ask, volume, open_interest, bid_size, ask_size, last_size = out
    return Ticker(  # positional, in field order: ticker ... exchange_ts
        m.market_ticker,
        m.market_id,
        price,
        yes_bid,
        yes_ask,
        volume,
        open_interest,
        m.dollar_volume,
        m.dollar_open_interest,
        bid_size,
        ask_size,
        last_size,
        finest_us(m.ts_ms, m.ts if type(m.ts) is str else m.time),
    )


def _ticker_by_field(m: _Ticker) -> Ticker:
    return Ticker(  # positional, in field order: ticker ... exchange_ts
        m.market_ticker,
        m.market_id,
        _price(m.price_dollars, m.price),
        _price(m.yes_bid_dollars, m.yes_bid),
        _price(m.yes_ask_dollars, m.yes_ask),
        _size(m.volume_fp, m.volume),
        _size(m.open_interest_fp, m.open_interest),
        m.dollar_volume,
        m.dollar_open_interest,
        _size(m.yes_bid_size_fp),
        _size(m.yes_ask_size_fp),
        _size(m.last_trade_size_fp),
        finest_us(m.ts_ms, m.ts if type(m.ts) is str else m.time),
    )


def _ladder(pairs: list[tuple[str, str]] | None, *legacy: Any) -> tuple[Level, ...]:
    if pairs is None:
        if any(x is not None for x in legacy):
            raise _Fallback
        return ()
    prices, sizes = _PRICES, _SIZES
    out = []
    for price, size in pairs:
        p = prices.get(price)
        q = sizes.get(size)
        out.append(
            (p if p is not None else parse_price(price), q if q is not None else parse_size(size))
        )
    return tuple(out)


def _snapshot(m: _Snapshot) -> BookSnapshot:
    return BookSnapshot(
        ticker=m.market_ticker,
        market_id=m.market_id,
        yes=_ladder(m.yes_dollars_fp, m.yes_dollars, m.yes),
        no=_ladder(m.no_dollars_fp, m.no_dollars, m.no),
    )


_BODIES: dict[type, tuple[str, Any]] = {
    _DeltaFrame: ("orderbook_delta", _delta),
    _TradeFrame: ("trade", _trade),
    _TickerFrame: ("ticker", _ticker),
    _SnapshotFrame: ("orderbook_snapshot", _snapshot),
}


def decode_fast(data: bytes) -> Message | None:
    """``data`` (one server frame, UTF-8 JSON) as a :class:`Message` when it is one of the
    four hot shapes in current form and every value is good; ``None`` otherwise (never
    raises): the general decoder then decides, and names what is wrong."""
    try:
        frame = _DECODER.decode(data)
    except msgspec.DecodeError:  # also ValidationError: another type or shape
        return None
    msg = frame.msg
    if msg is None:
        return None
    kind, convert = _BODIES[type(frame)]
    try:
        body = convert(msg)
    except (_Fallback, DecodeError):
        return None
    return Message(kind, body, frame.sid, frame.seq, frame.id)
