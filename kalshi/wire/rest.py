"""REST codec: response bodies of the market-data endpoints -> models.

Each function takes the parsed JSON body (or raw bytes) and raises ``DecodeError`` naming
the path of the first field that does not fit.
"""

from __future__ import annotations

from typing import Any

import orjson

from kalshi.errors import DecodeError
from kalshi.models.book import BookSnapshot
from kalshi.models.market import Event, Market, Series
from kalshi.models.trade import Trade
from kalshi.models.units import PRICE_SCALE, parse_rfc3339_us
from kalshi.wire._fields import (
    levels,
    opt_bool,
    opt_int,
    opt_price,
    opt_size,
    opt_str,
    opt_time,
    price_ranges,
    req_price,
    req_size,
    req_str,
    side,
    trade_time,
)

__all__ = [
    "decode_event",
    "decode_events_page",
    "decode_exchange_status",
    "decode_market",
    "decode_markets_page",
    "decode_orderbook",
    "decode_series",
    "decode_trades_page",
    "market_from_json",
    "trade_from_json",
]

Body = bytes | str | dict[str, Any]


def _body(body: Body) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"response is not JSON: {exc}") from None
    if type(data) is not dict:
        raise DecodeError(f"response is not a JSON object: got {type(data).__name__}")
    return data


def _list(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if items is None:
        return []
    if type(items) is not list or not all(type(i) is dict for i in items):
        raise DecodeError(f"{key}: expected a list of objects")
    return items


def _cursor(data: dict[str, Any]) -> str | None:
    """The next-page cursor; ``None`` on the last page (``""``, null or absent)."""
    cursor = data.get("cursor")
    return cursor if isinstance(cursor, str) and cursor else None


def _at(where: str, fn: Any, item: Any) -> Any:
    try:
        return fn(item)
    except DecodeError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def market_from_json(m: dict[str, Any]) -> Market:
    return Market(
        ticker=req_str(m, "ticker"),
        event_ticker=opt_str(m, "event_ticker"),
        status=req_str(m, "status"),
        market_type=opt_str(m, "market_type", "binary"),
        title=opt_str(m, "title"),
        yes_sub_title=opt_str(m, "yes_sub_title"),
        no_sub_title=opt_str(m, "no_sub_title"),
        created_time=opt_time(m, "created_time"),
        updated_time=opt_time(m, "updated_time"),
        open_time=opt_time(m, "open_time"),
        close_time=opt_time(m, "close_time"),
        latest_expiration_time=opt_time(m, "latest_expiration_time"),
        yes_bid=opt_price(m, "yes_bid_dollars"),
        yes_ask=opt_price(m, "yes_ask_dollars"),
        no_bid=opt_price(m, "no_bid_dollars"),
        no_ask=opt_price(m, "no_ask_dollars"),
        last_price=opt_price(m, "last_price_dollars"),
        volume=opt_size(m, "volume_fp"),
        volume_24h=opt_size(m, "volume_24h_fp"),
        open_interest=opt_size(m, "open_interest_fp"),
        result=opt_str(m, "result"),
        price_level_structure=opt_str(m, "price_level_structure"),
        price_ranges=price_ranges(m),
        exchange_index=opt_int(m, "exchange_index") or 0,
        settlement_value=opt_price(m, "settlement_value_dollars"),
        raw=orjson.dumps(m).decode(),
    )


def decode_markets_page(body: Body) -> tuple[list[Market], str | None]:
    """``GET /markets`` -> (markets, next cursor or None)."""
    data = _body(body)
    markets = [
        _at(f"markets[{i}]", market_from_json, m) for i, m in enumerate(_list(data, "markets"))
    ]
    return markets, _cursor(data)


def decode_market(body: Body) -> Market:
    """``GET /markets/{ticker}``."""
    data = _body(body)
    market = data.get("market")
    if type(market) is not dict:
        raise DecodeError("missing market")
    result: Market = _at("market", market_from_json, market)
    return result


def _event(e: dict[str, Any]) -> Event:
    return Event(
        event_ticker=req_str(e, "event_ticker"),
        series_ticker=opt_str(e, "series_ticker"),
        title=opt_str(e, "title"),
        sub_title=opt_str(e, "sub_title"),
        mutually_exclusive=bool(opt_bool(e, "mutually_exclusive")),
        exchange_index=opt_int(e, "exchange_index") or 0,
    )


def decode_events_page(body: Body) -> tuple[list[Event], list[Market], str | None]:
    """``GET /events`` -> (events, nested markets if requested, next cursor or None)."""
    data = _body(body)
    events: list[Event] = []
    markets: list[Market] = []
    for i, e in enumerate(_list(data, "events")):
        events.append(_at(f"events[{i}]", _event, e))
        for j, m in enumerate(_list(e, "markets")):
            markets.append(_at(f"events[{i}].markets[{j}]", market_from_json, m))
    return events, markets, _cursor(data)


def decode_event(body: Body) -> tuple[Event, list[Market]]:
    """``GET /events/{event_ticker}`` -> (event, its markets)."""
    data = _body(body)
    event = data.get("event")
    if type(event) is not dict:
        raise DecodeError("missing event")
    nested = _list(event, "markets") or _list(data, "markets")
    markets = [_at(f"markets[{i}]", market_from_json, m) for i, m in enumerate(nested)]
    return _at("event", _event, event), markets


def decode_series(body: Body) -> Series:
    """``GET /series/{series_ticker}``."""
    data = _body(body)
    s = data.get("series")
    if type(s) is not dict:
        raise DecodeError("missing series")
    tags = s.get("tags") or []
    return Series(
        ticker=req_str(s, "ticker"),
        title=opt_str(s, "title"),
        category=opt_str(s, "category"),
        frequency=opt_str(s, "frequency"),
        tags=tuple(t for t in tags if isinstance(t, str)),
    )


def decode_orderbook(body: Body, ticker: str) -> BookSnapshot:
    """``GET /markets/{ticker}/orderbook`` (``orderbook_fp``, or the legacy ``orderbook``)."""
    data = _body(body)
    book = data.get("orderbook_fp")
    if type(book) is dict:
        yes = levels(book, "yes_dollars", "yes_dollars", "yes_dollars")
        no = levels(book, "no_dollars", "no_dollars", "no_dollars")
    else:
        legacy = data.get("orderbook")
        if type(legacy) is not dict:
            raise DecodeError("missing orderbook_fp")
        yes = levels(legacy, "yes_dollars", "yes_dollars", "yes")
        no = levels(legacy, "no_dollars", "no_dollars", "no")
    return BookSnapshot(ticker=ticker, market_id="", yes=yes, no=no)


def decode_orderbooks(body: Body) -> list[BookSnapshot]:
    """``GET /markets/orderbooks`` (kalshi-api.md §4.5): ``{"orderbooks": [{"ticker",
    "orderbook_fp"}]}``, one snapshot per market the exchange returned. Raises
    :class:`DecodeError` on any other shape."""
    data = _body(body)
    books = data.get("orderbooks")
    if type(books) is not list:
        raise DecodeError("orderbooks: expected a list")
    out = []
    for item in books:
        if type(item) is not dict:
            raise DecodeError("orderbooks: expected objects")
        out.append(decode_orderbook(item, req_str(item, "ticker")))
    return out


def trade_from_json(t: dict[str, Any]) -> Trade:
    yes_price = req_price(t, "yes_price_dollars")
    no_price = opt_price(t, "no_price_dollars")
    taker = "taker_outcome_side" if t.get("taker_outcome_side") is not None else "taker_side"
    return Trade(
        trade_id=req_str(t, "trade_id"),
        ticker=req_str(t, "ticker"),
        yes_price=yes_price,
        no_price=PRICE_SCALE - yes_price if no_price is None else no_price,
        count=req_size(t, "count_fp"),
        taker_side=side(t, taker),
        exchange_ts=trade_time(parse_rfc3339_us(req_str(t, "created_time"))),
        is_block_trade=bool(opt_bool(t, "is_block_trade")),
    )


def decode_trades_page(body: Body) -> tuple[list[Trade], str | None]:
    """``GET /markets/trades`` -> (trades, next cursor or None)."""
    data = _body(body)
    trades = [_at(f"trades[{i}]", trade_from_json, t) for i, t in enumerate(_list(data, "trades"))]
    return trades, _cursor(data)


def decode_exchange_status(body: Body) -> tuple[bool, bool]:
    """``GET /exchange/status`` -> (exchange_active, trading_active)."""
    data = _body(body)
    active = opt_bool(data, "exchange_active")
    trading = opt_bool(data, "trading_active")
    if active is None or trading is None:
        raise DecodeError("missing exchange_active or trading_active")
    return active, trading
