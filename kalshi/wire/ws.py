"""WebSocket codec: server frames -> models, and client commands -> bytes.

``decode_ws`` never raises: a frame we cannot use comes back as ``Invalid`` (with the reason)
or ``Unrecognized`` (an unknown ``type``), both carrying the raw bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from kalshi.errors import DecodeError
from kalshi.models.book import BookDelta, BookSnapshot, Side
from kalshi.models.control import (
    Command,
    ErrorReply,
    OkReply,
    Subscribed,
    SubscriptionInfo,
    SubscriptionList,
    Unsubscribed,
)
from kalshi.models.frames import Body, Decoded, Invalid, Message, Unrecognized
from kalshi.models.lifecycle import EventFeeUpdate, EventLifecycle, LifecycleEvent
from kalshi.models.ticker import Ticker
from kalshi.models.trade import Trade
from kalshi.models.units import PRICE_SCALE, SIZE_SCALE, parse_price, parse_size
from kalshi.wire._fields import (
    CENT,
    finest_us,
    levels,
    opt_bool,
    opt_int,
    opt_price,
    opt_size,
    opt_str,
    price_ranges,
    req_int,
    req_price,
    req_size,
    req_str,
    side,
    trade_time,
    ts_us,
)
from kalshi.wire.fast import decode_fast

__all__ = [
    "CHANNELS",
    "decode_general",
    "decode_ws",
    "encode_command",
    "list_subscriptions_cmd",
    "subscribe_cmd",
    "unsubscribe_cmd",
    "update_subscription_cmd",
]

CHANNELS = ("orderbook_delta", "ticker", "trade", "market_lifecycle_v2")

Decoder = Callable[[dict[str, Any]], Body]


def _snapshot(msg: dict[str, Any]) -> BookSnapshot:
    return BookSnapshot(
        ticker=req_str(msg, "market_ticker"),
        market_id=opt_str(msg, "market_id"),
        yes=levels(msg, "yes_dollars_fp", "yes_dollars", "yes"),
        no=levels(msg, "no_dollars_fp", "no_dollars", "no"),
    )


def _legacy_price(msg: dict[str, Any], key: str, legacy: str) -> int:
    if msg.get(key) is None and type(msg.get(legacy)) is int:
        return int(msg[legacy]) * CENT
    return req_price(msg, key)


def _legacy_size(msg: dict[str, Any], key: str, legacy: str) -> int:
    if msg.get(key) is None and type(msg.get(legacy)) is int:
        return int(msg[legacy]) * SIZE_SCALE
    return req_size(msg, key)


def _delta(msg: dict[str, Any]) -> BookDelta:
    # The hot path: the current shape with every field well typed. Anything else (legacy
    # shapes, bad values) takes the general path below, which names what is wrong.
    ticker = msg.get("market_ticker")
    price = msg.get("price_dollars")
    change = msg.get("delta_fp")
    side_text = msg.get("side")
    ms = msg.get("ts_ms")
    market_id = msg.get("market_id", "")
    if (
        type(ticker) is str
        and type(price) is str
        and type(change) is str
        and type(ms) is int
        and type(market_id) is str
        and (side_text == "yes" or side_text == "no")
    ):
        try:
            return BookDelta(
                ticker,
                market_id,
                Side.YES if side_text == "yes" else Side.NO,
                parse_price(price),
                parse_size(change),
                finest_us(ms, msg.get("ts")),
            )
        except DecodeError:
            pass
    return _delta_checked(msg)


def _delta_checked(msg: dict[str, Any]) -> BookDelta:
    return BookDelta(
        ticker=req_str(msg, "market_ticker"),
        market_id=opt_str(msg, "market_id"),
        side=side(msg, "side"),
        price=_legacy_price(msg, "price_dollars", "price"),
        delta=_legacy_size(msg, "delta_fp", "delta"),
        exchange_ts=ts_us(msg),
    )


def _trade(msg: dict[str, Any]) -> Trade:
    yes_price = _legacy_price(msg, "yes_price_dollars", "yes_price")
    no_price = (
        _legacy_price(msg, "no_price_dollars", "no_price")
        if msg.get("no_price_dollars") is not None or msg.get("no_price") is not None
        else PRICE_SCALE - yes_price
    )
    taker = "taker_outcome_side" if msg.get("taker_outcome_side") is not None else "taker_side"
    when = ts_us(msg)
    if when is None:
        raise DecodeError("missing ts_ms")
    when = trade_time(when)
    return Trade(
        trade_id=req_str(msg, "trade_id"),
        ticker=req_str(msg, "market_ticker"),
        yes_price=yes_price,
        no_price=no_price,
        count=_legacy_size(msg, "count_fp", "count"),
        taker_side=side(msg, taker),
        exchange_ts=when,
        is_block_trade=bool(opt_bool(msg, "is_block_trade")),
    )


def _legacy_opt_price(msg: dict[str, Any], key: str, legacy: str) -> int | None:
    if msg.get(key) is None and type(msg.get(legacy)) is int:
        return int(msg[legacy]) * CENT
    return opt_price(msg, key)


def _legacy_opt_size(msg: dict[str, Any], key: str, legacy: str) -> int | None:
    if msg.get(key) is None and type(msg.get(legacy)) is int:
        return int(msg[legacy]) * SIZE_SCALE
    return opt_size(msg, key)


def _ticker(msg: dict[str, Any]) -> Ticker:
    when = ts_us(msg)
    if when is None:
        raise DecodeError("missing ts_ms")
    return Ticker(
        ticker=req_str(msg, "market_ticker"),
        market_id=opt_str(msg, "market_id"),
        price=_legacy_opt_price(msg, "price_dollars", "price"),
        yes_bid=_legacy_opt_price(msg, "yes_bid_dollars", "yes_bid"),
        yes_ask=_legacy_opt_price(msg, "yes_ask_dollars", "yes_ask"),
        volume=_legacy_opt_size(msg, "volume_fp", "volume"),
        open_interest=_legacy_opt_size(msg, "open_interest_fp", "open_interest"),
        dollar_volume=opt_int(msg, "dollar_volume"),
        dollar_open_interest=opt_int(msg, "dollar_open_interest"),
        yes_bid_size=opt_size(msg, "yes_bid_size_fp"),
        yes_ask_size=opt_size(msg, "yes_ask_size_fp"),
        last_trade_size=opt_size(msg, "last_trade_size_fp"),
        exchange_ts=when,
    )


def _seconds(msg: dict[str, Any], key: str) -> int | None:
    value = opt_int(msg, key)
    return None if value is None else value * 1_000_000


def _lifecycle(multivariate: bool) -> Decoder:
    def decode(msg: dict[str, Any]) -> LifecycleEvent:
        meta = msg.get("additional_metadata")
        if meta is not None and type(meta) is not dict:
            raise DecodeError("additional_metadata: expected an object")
        meta = meta or {}
        return LifecycleEvent(
            ticker=req_str(msg, "market_ticker"),
            event_type=req_str(msg, "event_type"),
            event_ticker=opt_str(meta, "event_ticker"),
            open_ts=_seconds(msg, "open_ts"),
            close_ts=_seconds(msg, "close_ts"),
            determination_ts=_seconds(msg, "determination_ts"),
            settled_ts=_seconds(msg, "settled_ts"),
            result=opt_str(msg, "result"),
            settlement_value=opt_price(msg, "settlement_value"),
            is_deactivated=opt_bool(msg, "is_deactivated"),
            exchange_index=opt_int(msg, "exchange_index"),
            price_level_structure=opt_str(msg, "price_level_structure"),
            price_ranges=price_ranges(msg),
            title=opt_str(meta, "title"),
            multivariate=multivariate,
        )

    return decode


def _event_lifecycle(msg: dict[str, Any]) -> EventLifecycle:
    subtitle = msg.get("subtitle", msg.get("sub_title"))
    return EventLifecycle(
        event_ticker=req_str(msg, "event_ticker"),
        series_ticker=opt_str(msg, "series_ticker"),
        title=opt_str(msg, "title"),
        subtitle=subtitle if isinstance(subtitle, str) else "",
        collateral_return_type=opt_str(msg, "collateral_return_type"),
        exchange_index=opt_int(msg, "exchange_index") or 0,
        strike_date=_seconds(msg, "strike_date"),
        strike_period=opt_str(msg, "strike_period"),
    )


def _fee_update(msg: dict[str, Any]) -> EventFeeUpdate:
    multiplier = msg.get("fee_multiplier_override")
    return EventFeeUpdate(
        event_ticker=req_str(msg, "event_ticker"),
        fee_type_override=msg.get("fee_type_override") or None,
        fee_multiplier_override=None if multiplier is None else str(multiplier),
    )


def _subscribed(msg: dict[str, Any]) -> Subscribed:
    return Subscribed(channel=req_str(msg, "channel"), sid=req_int(msg, "sid"))


def _error(msg: dict[str, Any]) -> ErrorReply:
    ticker = msg.get("market_ticker")
    return ErrorReply(
        code=req_int(msg, "code"),
        message=opt_str(msg, "msg"),
        market_ticker=ticker if isinstance(ticker, str) else None,
    )


_DECODERS: dict[str, Decoder] = {
    "orderbook_snapshot": _snapshot,
    "orderbook_delta": _delta,
    "trade": _trade,
    "ticker": _ticker,
    "market_lifecycle_v2": _lifecycle(False),
    "multivariate_market_lifecycle": _lifecycle(True),
    "event_lifecycle": _event_lifecycle,
    "event_fee_update": _fee_update,
    "subscribed": _subscribed,
    "error": _error,
}


def _envelope_int(frame: dict[str, Any], key: str) -> int | None:
    value = frame.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise DecodeError(f"{key}: expected an integer, got {type(value).__name__}")
    return value


def _ok(msg: Any) -> OkReply | SubscriptionList:
    if type(msg) is list:
        subs = []
        for i, item in enumerate(msg):
            if type(item) is not dict:
                raise DecodeError(f"msg[{i}]: expected an object")
            subs.append(SubscriptionInfo(req_str(item, "channel"), req_int(item, "sid")))
        return SubscriptionList(tuple(subs))
    if msg is None:
        return OkReply()
    if type(msg) is not dict:
        raise DecodeError("msg: expected an object or a list")
    tickers = msg.get("market_tickers")
    if tickers is None:
        return OkReply()
    if type(tickers) is not list or not all(type(t) is str for t in tickers):
        raise DecodeError("market_tickers: expected a list of strings")
    return OkReply(tuple(tickers))


def decode_ws(raw: bytes | str) -> Decoded:
    """Decode one server frame. Never raises for bad input. The four hot shapes in their
    current form take the compiled path (:mod:`kalshi.wire.fast`); everything else, and
    any frame that path declines, the general one below."""
    data = raw.encode() if isinstance(raw, str) else raw
    fast = decode_fast(data)
    if fast is not None:
        return fast
    return decode_general(data)


def decode_general(data: bytes) -> Decoded:
    """The general decoder: every message type, the legacy shapes, and a reason naming the
    field and value of a bad frame. Never raises; the reference for :mod:`kalshi.wire.fast`."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return Invalid(data, f"not JSON: {exc}")
    if type(frame) is not dict:
        return Invalid(data, "not a JSON object")
    kind = frame.get("type")
    if type(kind) is not str:
        return Invalid(data, "missing type")
    try:
        sid = _envelope_int(frame, "sid")
        seq = _envelope_int(frame, "seq")
        ident = _envelope_int(frame, "id")
        msg = frame.get("msg")
        body: Body
        if kind == "ok":
            body = _ok(msg)
        elif kind == "unsubscribed":
            body = Unsubscribed()
        elif kind == "subscribed" and msg is None:  # the older shape: no msg
            body = Subscribed(channel=None, sid=sid)
        else:
            decoder = _DECODERS.get(kind)
            if decoder is None:
                return Unrecognized(data, kind)
            if type(msg) is not dict:
                raise DecodeError("missing msg")
            body = decoder(msg)
            if kind == "subscribed" and sid is None:
                sid = body.sid  # type: ignore[union-attr]  # decoder returns Subscribed
    except DecodeError as exc:
        return Invalid(data, f"{kind}: {exc}")
    return Message(type=kind, body=body, sid=sid, seq=seq, id=ident)


# --- commands ---------------------------------------------------------------------------------


def encode_command(command: Command) -> bytes:
    payload: dict[str, object] = {"id": command.id, "cmd": command.cmd}
    if command.params is not None:
        payload["params"] = command.params
    return orjson.dumps(payload)


def subscribe_cmd(
    ident: int, channels: Iterable[str], tickers: Iterable[str] | None = None, **flags: object
) -> Command:
    params: dict[str, object] = {"channels": list(channels)}
    if tickers is not None:
        params["market_tickers"] = list(tickers)
    params.update(flags)
    return Command(ident, "subscribe", params)


def unsubscribe_cmd(ident: int, sids: Iterable[int]) -> Command:
    return Command(ident, "unsubscribe", {"sids": list(sids)})


def update_subscription_cmd(ident: int, sid: int, action: str, tickers: Iterable[str]) -> Command:
    """``action`` is ``add_markets``, ``delete_markets`` or ``get_snapshot``."""
    if action not in ("add_markets", "delete_markets", "get_snapshot"):
        raise ValueError(f"unknown update_subscription action {action!r}")
    return Command(
        ident,
        "update_subscription",
        {"sids": [sid], "market_tickers": list(tickers), "action": action},
    )


def list_subscriptions_cmd(ident: int) -> Command:
    return Command(ident, "list_subscriptions")
