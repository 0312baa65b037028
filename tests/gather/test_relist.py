"""Re-listing the markets rewrites no unchanged market (outside tester F2): not the periodic
re-list, not the first listing after a restart (every market again, a later
``updated_at``), not a replay of the journal again; each would give every market a new
``ingest_xid`` and the deduplicator would merge them all again. A real change still
updates its row."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from kalshi.gather.service import Gatherer
from kalshi.journal import read_journal
from kalshi.replay import replay_into_db
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.db.conftest import store_config
from tests.gather.support import sim_config, wait_for
from tests.gather.test_gather_sim import signer_of

MARKETS = 30


def _markets(url: str) -> dict[str, tuple[object, ...]]:
    """ticker -> (status, updated_at, ingest_xid) of every stored market."""
    with connect_db(url) as db:
        rows = db.query("SELECT ticker, status, updated_at, ingest_xid FROM markets")
    return {ticker: tuple(rest) for ticker, *rest in rows}


def _handled(gatherer: Gatherer) -> tuple[int, int, int]:
    """The store's ``markets`` rows: (new, already stored or the same, updated)."""
    if gatherer.store is None:
        return (0, 0, 0)
    t = gatherer.store.stats().tables["markets"]
    return (t.rows_written, t.rows_duplicate, t.rows_updated)


async def test_relists_restarts_and_replays_rewrite_no_unchanged_market(
    db_url: str, other_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kalshi.gather.rest")

    def listings() -> int:
        return sum(r.getMessage().startswith("listed ") for r in caplog.records)

    async with open_sim_exchange(
        markets=MARKETS, active=10, rate=50.0, seed=31, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()  # no market changes but the one made below
        cfg = sim_config(
            sim,
            tmp_path,
            db_url,
            relist_interval="1s",
            **{"writers.markets.flush_interval": "50ms"},
        )
        stored = []  # the markets table after each step
        changed = ""
        with trio.fail_after(120):
            for run in range(2):
                gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(gatherer.run)
                    await wait_for(lambda: sum(_handled(gatherer)) == MARKETS)  # noqa: B023
                    assert _handled(gatherer) == ((MARKETS, 0, 0) if run == 0 else (0, MARKETS, 0))
                    stored.append(_markets(db_url))
                    done = listings()
                    await wait_for(lambda: listings() >= done + 2)  # noqa: B023 - two re-lists
                    stored.append(_markets(db_url))
                    if run == 1:  # a real change: settled, by lifecycle and the next list
                        changed = sorted(gatherer.registry.live)[0]
                        sim.settle_market(changed, "yes")
                        await wait_for(
                            lambda: _markets(db_url)[changed][0] == "finalized"  # noqa: B023
                        )
                        done = listings()
                        await wait_for(lambda: listings() >= done + 2)  # noqa: B023
                        stored.append(_markets(db_url))
                    nursery.cancel_scope.cancel()
    first = stored[0]
    assert len(first) == MARKETS
    # the re-lists of run 1, the restart's listing and its re-lists: not one row rewritten
    assert stored[1:4] == [first] * 3
    last = stored[4]
    assert {t: v for t, v in last.items() if t != changed} == {
        t: v for t, v in first.items() if t != changed
    }
    status, _, xid = last[changed]
    assert status == "finalized"
    assert xid > first[changed][2]  # type: ignore[operator]

    # the journal replayed twice into another database: the second replay updates nothing
    files = [tmp_path / "journal"]
    replay_cfg = store_config(tmp_path / "replay")
    with trio.fail_after(60):
        once = await replay_into_db(read_journal(files), other_db_url, replay_cfg)
        before = _markets(other_db_url)
        again = await replay_into_db(read_journal(files), other_db_url, replay_cfg)
    assert once.written["markets"] == MARKETS
    assert {t: v[0] for t, v in before.items()} == {t: v[0] for t, v in last.items()}
    assert (dict(again.written), dict(again.updated), dict(again.left)) == ({}, {}, {})
    assert again.duplicate["markets"] == once.rows["markets"]
    assert _markets(other_db_url) == before
