"""The REST snapshot poller: whole books 100 markets per request (``GET
/markets/orderbooks``, kalshi-api.md §4.5), stored with ``source='rest'`` and compared with
the live books."""

from __future__ import annotations

from pathlib import Path

import orjson
import trio

from kalshi.gather import metrics
from kalshi.gather.service import Gatherer
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for
from tests.gather.test_gather_sim import all_live, settled, signer_of


def _requests(endpoint: str) -> float:
    return metrics.REST_REQUESTS.labels(endpoint, "200")._value.get()


async def test_one_pass_polls_every_live_market_in_bulk(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=400, active=250, rate=400.0, seed=8, port=0, start_us=PINNED_START_US
    ) as sim:
        cfg = sim_config(
            sim,
            tmp_path,
            db_url,
            **{"snapshot_poller.enabled": True, "snapshot_poller.interval": "1s"},
        )
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        single = _requests("/markets/{ticker}/orderbook")
        mismatches = metrics.SNAPSHOT_MISMATCHES._value.get()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                await wait_for(lambda: all_live(gatherer))
                sim.engine.pause()
                await wait_for(lambda: settled(gatherer, sim))
                polled = _requests("/markets/orderbooks")
                live = sorted(gatherer.registry.live)
                # the next pass starts after this one; it is complete when the one after starts
                await wait_for(
                    lambda: _requests("/markets/orderbooks") >= polled + 2 * -(-len(live) // 100)
                )
                nursery.cancel_scope.cancel()
        truth = sim.truth
    assert len(live) > 200
    assert _requests("/markets/{ticker}/orderbook") == single
    assert metrics.SNAPSHOT_MISMATCHES._value.get() == mismatches
    with connect_db(db_url) as db:
        rows = db.query(
            "SELECT DISTINCT ON (ticker) ticker, yes_bids::text, no_bids::text"
            " FROM orderbook_snapshots WHERE source = 'rest' ORDER BY ticker, snapshot_ts DESC"
        )
    assert [r[0] for r in rows] == live
    for ticker, yes, no in rows:
        book = truth.book(ticker)
        assert {p: s for p, s in orjson.loads(yes)} == book.yes, ticker
        assert {p: s for p, s in orjson.loads(no)} == book.no, ticker
