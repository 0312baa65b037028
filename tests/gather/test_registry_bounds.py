"""The registry over a long run (outside tester F4, F5): the re-list asks only for markets
that can still produce data (the ``status`` filters of GET /markets, kalshi-api.md §4.4)
plus those settled since the listing before; a finalized market is forgotten about three
intervals after it is first held as finalized, and no later listing brings it back;
``kalshi_markets_tracked`` follows the registry, every status present, 0 when none."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import trio
import trio.testing

from kalshi.gather import metrics
from kalshi.gather.registry import MARKET_STATUSES, MarketRegistry
from kalshi.gather.rest_tasks import relist_forever
from kalshi.net import RestClient
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US
from tests.gather.test_connection_timing import virtual_wall_us
from tests.gather.test_liveness import collecting_context

INTERVAL = 60  # s, relist_interval
MARKETS = 8000  # the first 8 000 of the universe hold every status but inactive and amended


def _tracked() -> dict[str, float]:
    """``kalshi_markets_tracked`` as a scrape reads it: status -> value."""
    return {
        sample.labels["status"]: sample.value
        for family in metrics.MARKETS.collect()
        for sample in family.samples
    }


async def test_finalized_markets_are_forgotten_and_never_listed_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kalshi.gather.rest")

    def listings() -> int:
        return sum(r.getMessage().startswith("listed ") for r in caplog.records)

    async with (
        open_sim_exchange(
            markets=MARKETS,
            active=20,
            rate=0.0,
            seed=11,
            port=0,
            start_us=PINNED_START_US,
            clock=virtual_wall_us,
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()
        ctx, rows = collecting_context(sim, tmp_path, nursery, relist_interval=f"{INTERVAL}s")
        ctx.wall_us = virtual_wall_us
        registry = MarketRegistry("t1")
        universe = sim.engine.universe
        infos = [universe.info(i) for i in range(MARKETS)]
        statuses = {info.ticker: universe.status(info) for info in infos}
        async with RestClient(
            sim.rest_url, ctx.signer, rate=1000.0, wall_us=virtual_wall_us
        ) as rest:
            listed = await nursery.start(relist_forever, ctx, rest, registry)
            # only what can still produce data: the universe's finalized markets are not asked for
            alive = {t for t, s in statuses.items() if s != "finalized"}
            assert len(alive) < len(statuses)
            assert (listed, set(registry.markets)) == (len(alive), alive)
            counts = Counter(statuses[t] for t in alive)
            assert _tracked() == {s: float(counts[s]) for s in MARKET_STATUSES}
            assert _tracked()["finalized"] == 0.0

            # a live market settles; no lifecycle connection: the next listing's settled window
            gone = sorted(registry.live)[0]
            sim.settle_market(gone, "yes")
            with trio.fail_after(10 * INTERVAL):
                while registry.markets.get(gone) is None or (  # noqa: ASYNC110
                    registry.markets[gone].status != "finalized"
                ):
                    await trio.sleep(1)
            held = listings()
            assert gone not in registry.live
            assert _tracked()["finalized"] == 1.0
            assert _tracked()["active"] == float(counts["active"] - 1)
            with trio.fail_after(10 * INTERVAL):
                while gone in registry.markets:  # noqa: ASYNC110
                    await trio.sleep(1)
            assert listings() == held + 3  # held two more listings, forgotten by the third
            assert _tracked()["finalized"] == 0.0
            # never listed again, never re-added
            with trio.fail_after(10 * INTERVAL):
                while listings() < held + 6:  # noqa: ASYNC110
                    await trio.sleep(1)
            assert gone not in registry.markets
            assert set(registry.markets) == alive - {gone}
        nursery.cancel_scope.cancel()
    # its rows stay: the one that says finalized was handed to the store
    mine = [r.status for r in rows["markets"] if r.ticker == gone]
    assert mine == [statuses[gone], "finalized"]
