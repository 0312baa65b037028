"""The REST client moves bytes; bodies are decoded in one place (``kalshi.wire.rest``), and a
body that does not fit names the request, the field and the value; 429, 5xx and transport
failures are tried again with backoff, other statuses are not. The exchange side is an
``httpx.MockTransport`` answering fixed bodies (the REST shapes of kalshi-api.md §4)."""

from __future__ import annotations

import itertools

import httpx
import pytest
import trio
import trio.testing

from kalshi.errors import DecodeError, HttpError
from kalshi.net import RestClient, TokenBucket


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


def _answering_in_turn(answers: list[int | None]) -> httpx.MockTransport:
    """Each request gets the next status (``None``: the connection fails)."""

    def answer(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        if status is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status, content=b"{}" if status == 200 else b'{"error":"x"}')

    return httpx.MockTransport(answer)


async def test_429_5xx_and_transport_failures_are_tried_again_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    answers: list[int | None] = [503, 429, None, 200]
    seen: list[tuple[str, int, float]] = []
    async with RestClient(
        "http://exchange.test/v2",
        transport=_answering_in_turn(answers),
        backoff=(1.0, 8.0),
        on_request=lambda endpoint, status: seen.append((endpoint, status, trio.current_time())),
    ) as rest:
        assert await rest.get("/markets/KX-A/orderbook") == b"{}"
        assert (rest.requests, rest.retries) == (4, 3)
    assert [(endpoint, status) for endpoint, status, _ in seen] == [
        ("/markets/{ticker}/orderbook", 503),
        ("/markets/{ticker}/orderbook", 429),
        ("/markets/{ticker}/orderbook", 0),
        ("/markets/{ticker}/orderbook", 200),
    ]
    waits = [b - a for (_, _, a), (_, _, b) in itertools.pairwise(seen)]
    for wait, cap in zip(waits, (1.0, 2.0, 4.0), strict=True):  # jitter in [cap/2, cap]
        assert cap / 2 <= wait <= cap


async def test_other_statuses_are_raised_at_once() -> None:
    answers: list[int | None] = [404, 200]
    async with RestClient("http://exchange.test/v2", transport=_answering_in_turn(answers)) as rest:
        with pytest.raises(HttpError) as caught:
            await rest.get("/markets/KX-A")
        assert (caught.value.status, rest.requests, rest.retries) == (404, 1, 0)
    assert answers == [200]


async def test_the_last_attempts_error_is_raised(autojump_clock: trio.testing.MockClock) -> None:
    answers: list[int | None] = [502, 503, 504, 200]
    async with RestClient(
        "http://exchange.test/v2", transport=_answering_in_turn(answers), attempts=3
    ) as rest:
        with pytest.raises(HttpError) as caught:
            await rest.get("/markets")
        assert (caught.value.status, rest.requests, rest.retries) == (504, 3, 2)
    assert answers == [200]


async def _takers(
    bucket: TokenBucket, count: int, nursery: trio.Nursery
) -> list[tuple[int, float]]:
    """``count`` tasks call ``bucket.take()`` one after the other (each waiting in it before
    the next calls); the list fills with (task, virtual time it got its token)."""
    got: list[tuple[int, float]] = []

    async def taker(i: int) -> None:
        await bucket.take()
        got.append((i, trio.current_time()))

    for i in range(count):
        nursery.start_soon(taker, i)
        await trio.testing.wait_all_tasks_blocked()
    return got


async def test_the_token_bucket_serves_its_callers_in_the_order_they_called(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A burst of 2, then one token every 0.5 s, to the callers in their order: Trio wakes
    tasks sleeping to one deadline in no fixed order, so waiters that all sleep and retry
    would take the tokens in any order (a snapshot pass then took 10.5 s instead of 10)."""
    bucket = TokenBucket(2.0)
    assert bucket.capacity == 4.0
    bucket = TokenBucket(2.0, burst=2)
    async with trio.open_nursery() as nursery:
        got = await _takers(bucket, 8, nursery)
    assert got == [(0, 0.0), (1, 0.0), (2, 0.5), (3, 1.0), (4, 1.5), (5, 2.0), (6, 2.5), (7, 3.0)]


async def test_a_caller_cancelled_while_it_waits_gives_its_token_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bucket = TokenBucket(2.0, burst=1)
    async with trio.open_nursery() as nursery:
        got = await _takers(bucket, 3, nursery)  # 0 at once, 1 due at 0.5 and 2 at 1.0
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await bucket.take()  # due at 1.5, cancelled at once: its token comes back
        late = await _takers(bucket, 1, nursery)
    assert got == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert late == [(0, 1.5)]  # not 2.0
