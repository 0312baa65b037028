"""The simulator opens a market at its open_time as the exchange does: ``initialized`` ->
``active`` with no message (kalshi-api.md §5 "Lifecycle"), the REST listing's ``status``
filter following it (§4.4), and a market added to trade starts trading then."""

from __future__ import annotations

import httpx
import trio
import trio.testing

from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US


def _virtual_wall_us() -> int:
    return PINNED_START_US + int(trio.current_time() * 1e6)


async def _listed(client: httpx.AsyncClient, status: str) -> list[str]:
    response = await client.get("/markets", params={"status": status, "limit": 1000})
    assert response.status_code == 200, response.text
    return [m["ticker"] for m in response.json()["markets"]]


async def test_an_added_market_opens_at_its_open_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_sim_exchange(
            markets=10,
            active=2,
            rate=0.0,
            seed=6,
            port=0,
            start_us=PINNED_START_US,
            clock=_virtual_wall_us,
        ) as sim,
        httpx.AsyncClient(base_url=sim.rest_url) as client,
    ):
        sim.engine.pause()
        await trio.sleep(0.5)
        ticker = sim.add_market(open_in_s=30, trade=True)
        frames = len(sim.truth.events)
        assert ticker not in sim.engine.active_tickers
        assert await _listed(client, "unopened") == [ticker]
        assert ticker not in await _listed(client, "open")
        # open_us is the second the market was added in, plus 30 s
        await trio.sleep(29.4)
        assert await _listed(client, "unopened") == [ticker]
        await trio.sleep(0.2)
        assert await _listed(client, "unopened") == []
        assert ticker in await _listed(client, "open")
        assert ticker in sim.engine.active_tickers  # trading from now on
        market = (await client.get(f"/markets/{ticker}")).json()["market"]
        assert market["status"] == "active"
        # no lifecycle message says so; its ticker message is the book's first quote
        assert [(e.type, e.ticker) for e in sim.truth.events[frames:]] == [("ticker", ticker)]
