"""The registry over a long run (outside tester F4, F5): the re-list asks only for markets
that can still produce data (the ``status`` filters of GET /markets, kalshi-api.md §4.4)
plus those settled since the listing before; a finalized market is forgotten about three
intervals after it is first held as finalized, and no later listing brings it back;
``kalshi_markets_tracked`` follows the registry, every status present, 0 when none; a
market opens at its open_time (F6). A replay of the journal forgets where live forgot (its
``forget`` marker), its registry as bounded as live's."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from kalshi.gather import metrics
from kalshi.gather.registry import MARKET_STATUSES, MarketRegistry
from kalshi.gather.rest_tasks import relist_forever
from kalshi.gather.service import Gatherer
from kalshi.journal import JournalRecord, JournalWriter, read_journal
from kalshi.net import RestClient
from kalshi.replay import Replayer
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for
from tests.gather.test_connection_timing import virtual_wall_us
from tests.gather.test_gather_sim import all_live, signer_of
from tests.gather.test_liveness import collecting_context
from tests.journal.journal_support import journal_config

INTERVAL = 60  # s, relist_interval
MARKETS = 8000  # the first 8 000 of the universe hold every status but inactive and amended


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return fn(*args)


def _tracked() -> dict[str, float]:
    """``kalshi_markets_tracked`` as a scrape reads it: status -> value."""
    return {
        sample.labels["status"]: sample.value
        for family in metrics.MARKETS.collect()
        for sample in family.samples
    }


def _listings(caplog: pytest.LogCaptureFixture) -> int:
    """Listings the relist task has completed ("listed ..." lines logged so far)."""
    return sum(r.getMessage().startswith("listed ") for r in caplog.records)


async def test_finalized_markets_are_forgotten_and_never_listed_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kalshi.gather.rest")

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
        # writes in the event loop: a worker thread would let the autojump clock run out
        # the journal's shielded close at cancellation
        journal = JournalWriter(journal_config(tmp_path), "t1", virtual_wall_us, run_sync=_inline)
        await nursery.start(journal.run)
        ctx.journal = journal
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
            held = _listings(caplog)
            assert gone not in registry.live
            assert _tracked()["finalized"] == 1.0
            assert _tracked()["active"] == float(counts["active"] - 1)
            with trio.fail_after(10 * INTERVAL):
                while gone in registry.markets:  # noqa: ASYNC110
                    await trio.sleep(1)
            assert _listings(caplog) == held + 3  # held two more listings, forgotten by the third
            assert _tracked()["finalized"] == 0.0
            # never listed again, never re-added
            with trio.fail_after(10 * INTERVAL):
                while _listings(caplog) < held + 6:  # noqa: ASYNC110
                    await trio.sleep(1)
            assert gone not in registry.markets
            assert set(registry.markets) == alive - {gone}
            await journal.on_disk()
        nursery.cancel_scope.cancel()
    # its rows stay: the one that says finalized was handed to the store
    mine = [r.status for r in rows["markets"] if r.ticker == gone]
    assert mine == [statuses[gone], "finalized"]
    # the journal's forget marker: a replay's registry forgets it where live's did, its
    # rows the live ones, exact
    records = list(read_journal([tmp_path / "journal"]))
    forgets = [r for r in records if isinstance(r, JournalRecord) and r.kind == "forget"]
    assert len(forgets) == 1
    replayer = Replayer()
    replayed = replayer.feed_all(records)
    assert replayed == [("markets", row) for row in rows["markets"]]
    assert set(replayer.registries["t1"].markets) == alive - {gone}
    assert replayer.registries["t1"].status_counts() == registry.status_counts()


async def test_a_finalized_market_is_held_while_a_backfill_window_may_hold_its_trades(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sharded gatherer stores the backfilled trades of the markets its registry holds: a
    market finalized after an open window began stays until the window's trades are in."""
    caplog.set_level(logging.INFO, logger="kalshi.gather.rest")

    async with (
        open_sim_exchange(
            markets=100,
            active=10,
            rate=0.0,
            seed=13,
            port=0,
            start_us=PINNED_START_US,
            clock=virtual_wall_us,
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()
        ctx, _ = collecting_context(sim, tmp_path, nursery, relist_interval=f"{INTERVAL}s")
        ctx.wall_us = virtual_wall_us
        registry = MarketRegistry("t1")
        async with RestClient(
            sim.rest_url, ctx.signer, rate=1000.0, wall_us=virtual_wall_us
        ) as rest:
            await nursery.start(relist_forever, ctx, rest, registry)
            await ctx.backfill_due("window", virtual_wall_us(), 0, "a lost trade session")
            await trio.sleep(1)
            gone = sorted(registry.live)[0]
            sim.settle_market(gone, "no")
            with trio.fail_after(20 * INTERVAL):
                while _listings(caplog) < 8:  # noqa: ASYNC110
                    await trio.sleep(1)
            assert registry.markets[gone].status == "finalized"  # the window is open
            await ctx.backfilled("window", virtual_wall_us())
            closed = _listings(caplog)
            with trio.fail_after(10 * INTERVAL):
                while gone in registry.markets:  # noqa: ASYNC110
                    await trio.sleep(1)
            assert _listings(caplog) == closed + 1  # the first listing after it forgets it
        nursery.cancel_scope.cancel()


async def test_a_created_market_is_active_once_its_open_time_passes(
    db_url: str, tmp_path: Path
) -> None:
    """F6: the exchange opens a market at its open_time with no event (kalshi-api.md §5);
    a market a ``created`` event made is ``active`` in the registry and the ``markets``
    table within a second, not at the next listing (60 s here)."""
    async with open_sim_exchange(
        markets=20, active=4, rate=20.0, seed=12, port=0, start_us=PINNED_START_US
    ) as sim:
        cfg = sim_config(sim, tmp_path, db_url, **{"writers.markets.flush_interval": "50ms"})
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                await wait_for(lambda: all_live(gatherer))
                ticker = sim.add_market(open_in_s=0, trade=False)
                await wait_for(lambda: ticker in gatherer.registry.markets)
                await wait_for(lambda: _stored_status(db_url, ticker) == "active")
                assert gatherer.registry.markets[ticker].status == "active"
                assert ticker in gatherer.registry.live
                assert _tracked()["initialized"] == 0.0
                nursery.cancel_scope.cancel()


def _stored_status(db_url: str, ticker: str) -> str | None:
    with connect_db(db_url) as db:
        rows = db.query("SELECT status FROM markets WHERE ticker = %s", (ticker,))
    return rows[0][0] if rows else None
