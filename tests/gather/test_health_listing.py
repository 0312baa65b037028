"""``/health`` while the market listing fails: nothing tracked is ``degraded``, not ``ok``
(the connections are live but carry no market); the first listing that succeeds makes it
``ok``. And a config without order-book or trade connections is refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio

from kalshi.config import ConfigError
from kalshi.gather.service import Gatherer
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for
from tests.gather.test_gather_sim import all_live, signer_of


async def test_nothing_tracked_because_listing_fails_is_degraded(
    db_url: str, tmp_path: Path
) -> None:
    async with open_sim_exchange(
        markets=20, active=5, rate=50.0, seed=3, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.faults.rest_429(3600.0)
        cfg = sim_config(sim, tmp_path, db_url, relist_interval="2s")  # its backoff's cap
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(gatherer.run)  # started once listed: not yet
                await wait_for(
                    lambda: gatherer.ctx is not None and gatherer.ctx.listing_error is not None
                )
                await wait_for(  # whole-exchange channels live, the order book with no market
                    lambda: all(
                        c.state in ("live", "idle")
                        for c in gatherer.layout.connections  # type: ignore[union-attr]
                    )
                )
                doc = gatherer.health()
                assert doc["status"] == "degraded"
                assert doc["markets"]["tracked"] == 0
                assert "429" in doc["markets"]["listing_error"]
                sim.faults.rest_429_until = -math.inf  # the exchange answers again
                await wait_for(lambda: len(gatherer.registry.markets) == 20)
                await wait_for(lambda: all_live(gatherer))
                # the listing is one request series a status filter: done after the last
                await wait_for(lambda: gatherer.ctx.listed)  # type: ignore[union-attr]
                doc = gatherer.health()
                assert (doc["status"], doc["markets"]["listing_error"]) == ("ok", None)
                nursery.cancel_scope.cancel()


async def test_the_first_failed_listing_attempt_is_on_health(db_url: str, tmp_path: Path) -> None:
    # Fresh-user finding 2: "starting" before any listing answered, then "degraded" with
    # listing_error from the first 429, not once the REST client's 8 attempts are spent.
    async with open_sim_exchange(
        markets=20, active=5, rate=50.0, seed=3, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.faults.rest_429(3600.0)
        cfg = sim_config(sim, tmp_path, db_url)
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        assert gatherer.health()["status"] == "starting"
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(gatherer.run)
                await wait_for(
                    lambda: gatherer.ctx is not None and gatherer.ctx.listing_error is not None
                )
                doc = gatherer.health()
                assert sim.truth.faults_injected["rest429"] < 8  # the client's attempts
                assert doc["status"] == "degraded"
                assert doc["markets"] == {
                    "tracked": 0,
                    "live": 0,
                    "books": 0,
                    "stale": 0,
                    "listing_error": "GET /markets: 429 too many requests",
                }
                nursery.cancel_scope.cancel()


@pytest.mark.parametrize("name", ["orderbook_connections", "trade_connections"])
def test_no_orderbook_or_trade_connection_is_a_config_error(tmp_path: Path, name: str) -> None:
    class Sim:  # only the URLs and the key are read
        rest_url, ws_url, key_id = "http://127.0.0.1:1/x", "ws://127.0.0.1:1/x", "k"
        private_key_pem = b"pem"

    with pytest.raises(ConfigError) as info:
        sim_config(Sim(), tmp_path, "postgresql://unused", **{f"websocket.{name}": 0})
    assert info.value.problems == [f"websocket.{name}: expected an integer >= 1, got 0"]
