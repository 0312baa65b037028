"""`--shard i/n`: two gatherers split the exchange between them, nothing twice, nothing
missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from kalshi.auth import Signer, load_private_key
from kalshi.gather.registry import Shard
from kalshi.gather.service import Gatherer
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for

# Two universe dates: the tickers carry the date, so the split differs between them, and the
# expectation is computed from the shard rule, never typed in.
DATES = [PINNED_START_US, PINNED_START_US + 37 * 86_400_000_000]


@pytest.mark.parametrize("start_us", DATES, ids=["2026-11-25", "2027-01-01"])
async def test_two_shards_record_every_trade_once_and_split_the_books(
    db_url: str, tmp_path: Path, start_us: int
) -> None:
    async with open_sim_exchange(
        markets=600, active=50, rate=600.0, seed=8, port=0, start_us=start_us
    ) as sim:
        sim.engine.pause()
        before = len(sim.truth.trades)
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        shards = [
            Gatherer(
                sim_config(
                    sim,
                    tmp_path / f"s{i}",
                    db_url,
                    **{
                        "gatherer_id": f"shard-{i}",
                        "shard": f"{i}/2",
                        "websocket.trade_connections": 2,
                    },
                ),
                db_url,
                signer=signer,
            )
            for i in range(2)
        ]
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for gatherer in shards:
                    await nursery.start(gatherer.run)
                await wait_for(
                    lambda: all(
                        all(c.state == "live" for c in g.layout.connections)  # type: ignore[union-attr]
                        for g in shards
                    )
                )
                sim.engine.resume()
                await wait_for(lambda: len(sim.truth.trades) >= before + 100)
                sim.engine.pause()
                await wait_for(
                    lambda: all(
                        g.processor.books.get(t) == sim.truth.book(t)
                        for t in sim.engine.active_tickers
                        for g in shards
                        if t in g.registry.live
                    )
                )
                # a trade frame may still be on its socket: until the database has them all
                expected_ids = {t.trade_id for t in sim.truth.trades[before:]}
                await wait_for(lambda: expected_ids <= _stored_trades(db_url))
                for gatherer in shards:
                    await gatherer.committed()
                nursery.cancel_scope.cancel()

    live = [g.registry.live for g in shards]
    subscribable = {
        t: m
        for t, m in sim.truth.markets.items()
        if m.status in ("initialized", "active", "inactive")
    }
    owned = [{t for t, m in subscribable.items() if Shard(i, 2).owns(m)} for i in range(2)]
    assert live == owned  # whole events, by BLAKE2b of their event tickers
    assert live[0].isdisjoint(live[1])
    assert live[0] | live[1] == set(subscribable)
    with connect_db(db_url) as db:
        trades = db.query("SELECT gatherer_id, trade_id FROM trades")
    expected = {t.trade_id: t.ticker for t in sim.truth.trades[before:]}
    assert sorted(tid for _, tid in trades) == sorted(expected)  # once each, none missing
    for gid, tid in trades:  # each recorded by the shard that owns its market
        owner = 0 if expected[tid] in live[0] else 1
        assert gid == f"shard-{owner}"


def _stored_trades(db_url: str) -> set[str]:
    with connect_db(db_url) as db:
        return {tid for (tid,) in db.query("SELECT trade_id FROM trades")}
