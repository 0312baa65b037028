"""The REST client moves bytes; bodies are decoded in one place (``kalshi.wire.rest``), and a
body that does not fit names the request, the field and the value. The exchange side is an
``httpx.MockTransport`` answering fixed bodies (the REST shapes of kalshi-api.md §4)."""

from __future__ import annotations

import httpx
import pytest

from kalshi.errors import DecodeError
from kalshi.net import RestClient


def _answering(body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, content=body))


async def test_get_returns_the_body_undecoded() -> None:
    body = b'{"markets": [], "cursor": ""}'
    async with RestClient("http://exchange.test/v2", transport=_answering(body)) as rest:
        assert await rest.get("/markets") == body


async def test_a_body_that_is_not_json_names_the_request() -> None:
    async with RestClient("http://exchange.test/v2", transport=_answering(b"<html>")) as rest:
        with pytest.raises(DecodeError) as caught:
            await rest.orderbook("KX-A")
    assert str(caught.value) == (
        "GET /markets/KX-A/orderbook: response is not JSON: "
        "unexpected character, expected a JSON value: line 1 column 1 (char 0)"
    )


async def test_a_bad_field_names_the_request_the_field_and_the_value() -> None:
    body = (
        b'{"trades": [{"trade_id": "t1", "ticker": "KX-A", "yes_price_dollars": "0.42x",'
        b' "no_price_dollars": "0.58", "count_fp": "1.00", "taker_side": "yes",'
        b' "created_time": "2026-01-01T00:00:00.123456Z"}]}'
    )
    async with RestClient("http://exchange.test/v2", transport=_answering(body)) as rest:
        with pytest.raises(DecodeError) as caught:
            async for _ in rest.trades():
                pass
    assert str(caught.value) == (
        "GET /markets/trades: trades[0]: yes_price_dollars: price: not a decimal number: '0.42x'"
    )


async def test_a_body_that_is_not_an_object_names_its_type() -> None:
    async with RestClient("http://exchange.test/v2", transport=_answering(b"[1]")) as rest:
        with pytest.raises(DecodeError) as caught:
            await rest.orderbooks(["KX-A"])
    assert str(caught.value) == "GET /markets/orderbooks: response is not a JSON object: got list"
