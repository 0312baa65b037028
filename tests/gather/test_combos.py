"""Combo (multivariate, ``KXMVE...``) markets: their lifecycle comes only on
``multivariate_market_lifecycle`` (kalshi-api.md §3.5, §3.6, §5). A combo created mid-run is
registered, stored in ``markets``, its lifecycle rows and trades recorded, and its
settlement followed, without waiting for a re-list."""

from __future__ import annotations

from pathlib import Path

import orjson
import trio

from kalshi.auth import Signer, load_private_key
from kalshi.gather.service import Gatherer
from kalshi.net import RestClient
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for


async def test_a_combo_created_mid_run_is_recorded(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=20, active=3, rate=300.0, seed=11, port=0, start_us=PINNED_START_US
    ) as sim:
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        cfg = sim_config(sim, tmp_path, db_url, **{"relist_interval": "600s"})
        gatherer = Gatherer(cfg, db_url, signer=signer)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                layout = gatherer.layout
                assert layout is not None
                await wait_for(lambda: all(c.state == "live" for c in layout.connections))
                combo = sim.engine.add_market(combo=True)
                await wait_for(lambda: combo in gatherer.registry.live)
                await wait_for(lambda: sum(t.ticker == combo for t in sim.truth.trades) >= 3)
                sim.engine.settle_market(combo, "no")
                await wait_for(lambda: combo not in gatherer.registry.live)
                sim.engine.pause()
                await trio.sleep(1)
                nursery.cancel_scope.cancel()
        combo_trades = {t.trade_id for t in sim.truth.trades if t.ticker == combo}
        async with RestClient(sim.rest_url, signer) as rest:
            only = orjson.loads(await rest.get("/markets", {"mve_filter": "only"}))
            excluded = orjson.loads(
                await rest.get("/markets", {"mve_filter": "exclude", "limit": 1000})
            )
            everything = orjson.loads(await rest.get("/markets", {"limit": 1000}))
    assert combo.startswith("KXMVECROSSCATEGORY-")
    assert [m["ticker"] for m in only["markets"]] == [combo]
    assert only["markets"][0]["mve_collection_ticker"] == "KXMVECROSSCATEGORY"
    assert combo not in {m["ticker"] for m in excluded["markets"]}
    assert combo in {m["ticker"] for m in everything["markets"]}
    with connect_db(db_url) as db:
        kinds = db.query(
            "SELECT event_type FROM market_lifecycle WHERE ticker = %s ORDER BY frame_no",
            (combo,),
        )
        stored = {
            tid for (tid,) in db.query("SELECT trade_id FROM trades WHERE ticker = %s", (combo,))
        }
        statuses = db.query("SELECT status FROM markets WHERE ticker = %s", (combo,))
    assert [k for (k,) in kinds] == ["created", "determined", "settled"]
    assert stored == combo_trades and len(stored) >= 3
    assert statuses == [("finalized",)]
