"""REST decoders against the reference's example bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalshi.errors import DecodeError
from kalshi.models import BookSnapshot, PriceRange, Side, Trade
from kalshi.wire import (
    decode_exchange_status,
    decode_market,
    decode_markets_page,
    decode_orderbook,
    decode_trades_page,
    decode_ws,
)

REST = Path(__file__).parent.parent / "data" / "rest"


def body(name: str) -> bytes:
    return (REST / f"{name}.json").read_bytes()


def test_market() -> None:
    market = decode_market(body("market"))
    assert (market.ticker, market.event_ticker, market.status) == (
        "KXHIGHNY-26AUG28-B81.5",
        "KXHIGHNY-26AUG28",
        "active",
    )
    assert (market.yes_bid, market.yes_ask, market.no_bid, market.no_ask) == (
        42000,
        44000,
        56000,
        58000,
    )
    assert (market.last_price, market.volume, market.volume_24h, market.open_interest) == (
        43000,
        512000,
        83000,
        230100,
    )
    assert market.open_time == 1_787_839_200_000_000
    assert market.close_time == 1_787_975_940_000_000
    assert market.price_ranges == (PriceRange(0, 100000, 1000),)


def test_markets_page_cursor_end_forms() -> None:
    for tail in (b'"cursor":""', b'"cursor":null', b'"x":1'):
        markets, cursor = decode_markets_page(b'{"markets":[],' + tail + b"}")
        assert (markets, cursor) == ([], None)
    _, cursor = decode_markets_page(b'{"markets":[],"cursor":"abc"}')
    assert cursor == "abc"


def test_orderbook() -> None:
    assert decode_orderbook(body("orderbook"), "T") == BookSnapshot(
        "T",
        "",
        yes=((1000, 20000), (41000, 1000), (42000, 1300)),
        no=((1000, 10000), (45000, 2000), (56000, 1700)),
    )


def test_trades_page() -> None:
    trades, cursor = decode_trades_page(body("trades"))
    assert cursor == "abc"
    assert trades == [
        Trade(
            "d91bc706-ee49-470d-82d8-11418bda6fed",
            "HIGHNY-22DEC23-B53.5",
            36000,
            64000,
            13600,
            Side.NO,
            1_669_149_841_123_000,
            False,
        )
    ]


def test_exchange_status() -> None:
    assert decode_exchange_status(body("exchange_status")) == (True, True)


def test_bad_bodies_name_the_field() -> None:
    with pytest.raises(DecodeError, match=r"markets\[0\]: missing status"):
        decode_markets_page(b'{"markets":[{"ticker":"A"}]}')
    with pytest.raises(DecodeError, match="response is not JSON"):
        decode_market(b"<html>")
    with pytest.raises(DecodeError, match="missing orderbook_fp"):
        decode_orderbook(b"{}", "T")


def test_rest_and_ws_give_a_trade_the_same_time() -> None:
    # The real exchange: REST created_time in µs, the WS frame of the same trade in ms.
    rest = (
        b'{"trades":[{"trade_id":"t","ticker":"M","count_fp":"1.00","yes_price_dollars":"0.3600",'
        b'"taker_side":"no","created_time":"2026-08-13T11:29:25.354888Z"}],"cursor":""}'
    )
    ws = (
        b'{"type":"trade","sid":3,"seq":1,"msg":{"trade_id":"t","market_ticker":"M",'
        b'"yes_price_dollars":"0.3600","count_fp":"1.00","taker_side":"no",'
        b'"ts":1786620565,"ts_ms":1786620565354}}'
    )
    (from_rest,), _ = decode_trades_page(rest)
    from_ws = decode_ws(ws).body  # type: ignore[union-attr]
    assert from_rest.exchange_ts == from_ws.exchange_ts == 1_786_620_565_354_000
