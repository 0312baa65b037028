"""The gatherer with a memory bound smaller than its batches, the database up: every row is
written without a restart (the listing's batch goes through the disk spool)."""

from __future__ import annotations

from pathlib import Path

import trio

from kalshi.gather.service import Gatherer
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for
from tests.gather.test_gather_sim import all_live, signer_of


async def test_a_listing_larger_than_memory_is_written_at_once(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=300, active=4, rate=20.0, seed=7, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()
        cfg = sim_config(sim, tmp_path, db_url, **{"spool.memory_rows": 100})
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                await wait_for(lambda: all_live(gatherer))
                listed = len(gatherer.registry.markets)
                # the listing's rows are handed over before the connections go live; one
                # batch of 300 > memory_rows: spooled, then written with the database up
                await gatherer.committed()
                table = gatherer.store.stats().tables["markets"]  # type: ignore[union-attr]
                assert (table.rows_written, table.spool_rows, table.spool_files) == (300, 0, 0)
                nursery.cancel_scope.cancel()
    assert listed == 300
    assert list((tmp_path / "spool" / "markets").glob("*.batch")) == []
    with connect_db(db_url) as db:
        assert db.counts()["markets"] == 300
