"""The REST API of the simulator through httpx, checked against the reference (§4) and read
back with the repository's decoders. The exchange runs on a frozen ``mock_clock`` (on
``autojump_clock`` where the REST client's backoff must pass, in memory)."""

from __future__ import annotations

import attrs
import httpx
import orjson
import pytest

from kalshi.errors import ConnectionLost
from kalshi.models import Trade
from kalshi.net import RestClient
from kalshi.sim.universe import MARKETS_PER_EVENT
from kalshi.testing import signed_headers, sim
from kalshi.testing.memory import memory_transport
from kalshi.wire import (
    decode_event,
    decode_events_page,
    decode_exchange_status,
    decode_market,
    decode_markets_page,
    decode_orderbook,
    decode_orderbooks,
    decode_series,
    decode_trades_page,
)


async def _all_pages(
    client: httpx.AsyncClient, path: str, key: str, **params: object
) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = ""
    while True:
        response = await client.get(path, params={**params, "cursor": cursor})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body[key]
        cursor = body["cursor"]
        if not cursor:
            return items


async def test_markets_pagination_filters_and_decoders(mock_clock: object) -> None:
    async with (
        sim(markets=95, active=3, tier=None) as ex,
        httpx.AsyncClient(base_url=ex.rest_url) as c,
    ):
        markets = await _all_pages(c, "/markets", "markets", limit=7)
        assert [m["ticker"] for m in markets] == list(ex.truth.markets)
        assert len(markets) == 95
        page = await c.get("/markets", params={"limit": 7})
        decoded, cursor = decode_markets_page(page.content)
        assert [m.ticker for m in decoded] == list(ex.truth.markets)[:7] and cursor
        # the decoded fields equal the truth; `raw` keeps the object as served
        assert [attrs.evolve(m, raw="") for m in decoded] == [
            ex.truth.markets[m.ticker] for m in decoded
        ]
        assert [orjson.loads(m.raw) for m in decoded] == page.json()["markets"]
        first = markets[0]
        assert first["ticker"] == "KXHIGHNY-" + first["event_ticker"].split("-")[1] + "-T52"  # type: ignore[union-attr]
        assert first["yes_bid_dollars"].count(".") == 1 and len(first["yes_bid_dollars"]) == 6  # type: ignore[union-attr]
        event = markets[0]["event_ticker"]
        by_event = await _all_pages(c, "/markets", "markets", event_ticker=event)
        assert len(by_event) == MARKETS_PER_EVENT
        series = await _all_pages(c, "/markets", "markets", series_ticker="KXBTCD", limit=3)
        assert {m["event_ticker"].split("-")[0] for m in series} == {"KXBTCD"}  # type: ignore[union-attr]
        picked = await c.get(
            "/markets", params={"tickers": f"{markets[3]['ticker']},{markets[1]['ticker']}"}
        )
        assert [m["ticker"] for m in picked.json()["markets"]] == [
            markets[1]["ticker"],
            markets[3]["ticker"],
        ]
        opened = await _all_pages(c, "/markets", "markets", status="open")
        assert len(opened) == 95 and {m["status"] for m in opened} == {"active"}
        assert (await c.get("/markets", params={"status": "settled"})).json() == {
            "markets": [],
            "cursor": "",
        }
        assert (await c.get("/markets", params={"mve_filter": "only"})).json() == {
            "markets": [],
            "cursor": "",
        }
        for params in (
            {"limit": 1001},
            {"status": "live"},
            {"min_close_ts": 1, "min_created_ts": 1},
            {"status": "settled", "min_created_ts": 1},
            {"min_updated_ts": 1},
            {"cursor": "garbage!"},
        ):
            response = await c.get("/markets", params=params)
            assert response.status_code == 400, params
            assert response.json()["error"]["code"] == "bad_request"


async def test_single_market_orderbook_trades(mock_clock: object) -> None:
    async with (
        sim(markets=20, active=2, tier=None) as ex,
        httpx.AsyncClient(base_url=ex.rest_url) as c,
    ):
        ex.engine.step(400)
        ticker = ex.engine.active_tickers[0]
        market = decode_market((await c.get(f"/markets/{ticker}")).content)
        assert attrs.evolve(market, raw="") == ex.truth.markets[ticker]
        missing = await c.get("/markets/NOPE-1")
        error = {"code": "market_not_found", "message": "market not found", "service": "sim"}
        assert (missing.status_code, missing.json()) == (404, {"error": error})
        book = decode_orderbook((await c.get(f"/markets/{ticker}/orderbook")).content, ticker)
        truth = ex.truth.book(ticker)
        assert (book.yes, book.no) == (
            truth.levels(truth_side("yes")),
            truth.levels(truth_side("no")),
        )
        top = decode_orderbook(
            (await c.get(f"/markets/{ticker}/orderbook", params={"depth": 2})).content, ticker
        )
        assert (top.yes, top.no) == (book.yes[-2:], book.no[-2:])
        assert (
            await c.get(f"/markets/{ticker}/orderbook", params={"depth": 101})
        ).status_code == 400
        trades: list[Trade] = []
        cursor = ""
        while True:
            page, next_cursor = decode_trades_page(
                (await c.get("/markets/trades", params={"limit": 9, "cursor": cursor})).content
            )
            trades += page
            if next_cursor is None:
                break
            cursor = next_cursor
        assert trades == ex.truth.trades[::-1]  # newest first
        mine = decode_trades_page(
            (await c.get("/markets/trades", params={"ticker": ticker, "limit": 1000})).content
        )[0]
        assert mine == [t for t in ex.truth.trades[::-1] if t.ticker == ticker]
        last_s = ex.truth.trades[-1].exchange_ts // 1_000_000
        window = decode_trades_page(
            (await c.get("/markets/trades", params={"min_ts": last_s + 1, "limit": 1000})).content
        )[0]
        assert window == []
        window = decode_trades_page(
            (
                await c.get(
                    "/markets/trades",
                    params={"max_ts": last_s, "min_ts": last_s - 5, "limit": 1000},
                )
            ).content
        )[0]
        assert window == [
            t for t in ex.truth.trades[::-1] if t.exchange_ts >= (last_s - 5) * 1_000_000
        ]


def truth_side(name: str) -> object:
    from kalshi.models import Side

    return Side(name)


async def test_events_series_and_status(mock_clock: object) -> None:
    async with (
        sim(markets=45, active=2, tier=None) as ex,
        httpx.AsyncClient(base_url=ex.rest_url) as c,
    ):
        events = await _all_pages(c, "/events", "events", limit=2)
        assert len(events) == 5
        page = decode_events_page(
            (await c.get("/events", params={"with_nested_markets": "true"})).content
        )
        assert len(page[0]) == 5 and len(page[1]) == 45 and page[2] is None
        event, markets = decode_event((await c.get(f"/events/{events[0]['event_ticker']}")).content)
        assert event.event_ticker == events[0]["event_ticker"] and len(markets) == MARKETS_PER_EVENT
        assert (await c.get("/events/NOPE")).status_code == 404
        series = decode_series((await c.get("/series/KXHIGHNY")).content)
        assert (series.ticker, series.category) == ("KXHIGHNY", "Climate and Weather")
        assert (await c.get("/series/NOPE")).status_code == 404
        assert len((await c.get("/series")).json()["series"]) == 16
        status = await c.get("/exchange/status")
        assert decode_exchange_status(status.content) == (True, True)


async def test_token_bucket_answers_429_like_the_reference(mock_clock: object) -> None:
    async with sim(markets=5, active=1) as ex, httpx.AsyncClient(base_url=ex.rest_url) as c:
        codes = [(await c.get("/exchange/status")).status_code for _ in range(41)]
        assert codes == [200] * 40 + [429]  # basic: 400 tokens, 10 a request
        limited = await c.get("/exchange/status")
        assert (limited.status_code, limited.content) == (429, b'{"error":"too many requests"}')
        assert "retry-after" not in limited.headers
        mock_clock.jump(0.05)  # type: ignore[attr-defined]  # 200 tokens/s refill: one request
        assert [(await c.get("/exchange/status")).status_code for _ in range(2)] == [200, 429]
        # A signed request is billed to the key, in its own bucket.
        path = "/trade-api/v2/exchange/status"
        assert (
            await c.get("/exchange/status", headers=signed_headers(ex, path))
        ).status_code == 200
        bad = signed_headers(ex, "/trade-api/v2/markets")
        assert (await c.get("/exchange/status", headers=bad)).status_code == 401


@pytest.mark.slow
async def test_250k_markets_list_through_pagination() -> None:
    async with (
        sim(markets=250_000, active=10, tier=None) as ex,
        httpx.AsyncClient(base_url=ex.rest_url, timeout=60) as c,
    ):
        ex.engine.pause()
        count, cursor, last = 0, "", ""
        seen: set[str] = set()
        while True:
            response = await c.get("/markets", params={"limit": 1000, "cursor": cursor})
            markets, next_cursor = decode_markets_page(response.content)
            count += len(markets)
            seen.update(m.ticker for m in markets)
            last = markets[-1].ticker if markets else last
            if next_cursor is None:
                break
            cursor = next_cursor
        assert count == len(seen) == 250_000
        assert last == ex.universe.info(249_999).ticker


async def test_bulk_orderbooks_one_request_for_up_to_100_markets(mock_clock: object) -> None:
    """kalshi-api.md §4.5: ``GET /markets/orderbooks?tickers=A&tickers=B`` (1-100 tickers)."""
    async with (
        sim(markets=200, active=150, tier=None) as ex,
        httpx.AsyncClient(base_url=ex.rest_url) as c,
    ):
        ex.engine.step(2000)
        tickers = sorted(ex.engine.active_tickers)[:100]
        response = await c.get("/markets/orderbooks", params={"tickers": [*tickers, "NOPE-1"][1:]})
        books = decode_orderbooks(response.content)
        assert [b.ticker for b in books] == tickers[1:]  # the unknown market is left out
        for book in books:
            truth = ex.truth.book(book.ticker)
            assert (book.yes, book.no) == (
                truth.levels(truth_side("yes")),
                truth.levels(truth_side("no")),
            )
        assert sum(1 for b in books if b.yes or b.no) > 50
        too_many = await c.get("/markets/orderbooks", params={"tickers": [*tickers, "X-1"]})
        none = await c.get("/markets/orderbooks")
        assert (too_many.status_code, none.status_code) == (400, 400)


async def test_the_memory_transport_gets_what_a_socket_gets(mock_clock: object) -> None:
    """``memory_transport``: the simulator serves a memory stream as it serves a TCP
    connection (same status, headers, body); a connection it drops is a transport error."""
    async with sim(markets=30, active=3, seed=3, tier=None) as ex:
        ex.engine.pause()
        paths = ("/markets", "/exchange/status", "/markets/orderbooks?tickers=NOPE")
        async with (
            httpx.AsyncClient(base_url=ex.rest_url) as tcp,
            httpx.AsyncClient(base_url=ex.rest_url, transport=memory_transport(ex)) as memory,
        ):
            for path in paths:
                over_tcp, in_memory = await tcp.get(path), await memory.get(path)
                assert in_memory.status_code == over_tcp.status_code == 200, path
                assert in_memory.content == over_tcp.content, path
                assert in_memory.headers == over_tcp.headers, path
        ex.faults.refuse_connections(1.0)  # the clock is frozen: every new connection
        async with httpx.AsyncClient(base_url=ex.rest_url, transport=memory_transport(ex)) as c:
            with pytest.raises(httpx.TransportError):
                await c.get("/markets")
        assert ex.truth.faults_injected["refuse"] == 1


async def test_the_rest_client_tries_a_dropped_memory_connection_again(
    autojump_clock: object,
) -> None:
    async with sim(markets=30, active=3, seed=3, tier=None) as ex:
        ex.engine.pause()
        ex.faults.refuse_connections(60.0)
        async with RestClient(
            ex.rest_url, rate=1000, attempts=3, transport=memory_transport(ex)
        ) as rest:
            with pytest.raises(ConnectionLost):
                await rest.get("/markets")
            assert (rest.requests, rest.retries) == (3, 2)
        assert ex.truth.faults_injected["refuse"] == 3
