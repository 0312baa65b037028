"""``subscription_refused`` gaps against the simulator's per-subscription market cap
(error 26): one open gap per market and episode, whichever connections asked and however
often (retries, reconnects); closed when the market is subscribed on some connection, and
at a clean stop (the next start's outage gap covers the market from there)."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import trio

from kalshi.gather.service import Gatherer
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US, free_port
from tests.gather.support import gatherer_processes, sim_config, wait_for
from tests.gather.test_gather_sim import signer_of
from tests.gather.test_restart import _config, _wait_live

CAP = 4  # markets per subscription; 2 order-book connections take 8


def _refusals(db_url: str) -> list[tuple[str, int, int | None]]:
    with connect_db(db_url) as db:
        return db.query(
            "SELECT ticker, start_ts, end_ts FROM gaps WHERE kind = 'subscription_refused'"
            " ORDER BY start_ts, ticker"
        )


async def test_one_refusal_gap_per_market_and_episode_closed_when_subscribed(
    db_url: str, tmp_path: Path
) -> None:
    async with open_sim_exchange(
        markets=12, active=4, rate=50.0, seed=8, port=0, start_us=PINNED_START_US, market_cap=CAP
    ) as sim:
        cfg = sim_config(sim, tmp_path, db_url, **{"websocket.refusal_retry": "1s"})
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                ctx, layout = gatherer.ctx, gatherer.layout
                assert ctx is not None and layout is not None
                books = [c for c in layout.connections if c.channel == "orderbook_delta"]
                live = len(gatherer.registry.live)
                refused = live - 2 * CAP
                # all 12 markets are live at the pinned start; two connections take 8
                assert (live, refused) == (12, 4)
                counts = gatherer.processor.counts

                def held() -> bool:
                    return sum(len(c.refused) for c in books) == refused

                await wait_for(lambda: held() and len(ctx.refusals) == refused)
                # retried on both connections, then both reconnect and are refused again
                asked = counts["error_reply"]
                await wait_for(lambda: counts["error_reply"] >= asked + 2 * refused)
                sessions = [c.sessions for c in books]
                sim.faults.drop_connections(abrupt=True)
                await wait_for(lambda: [c.sessions for c in books] == [s + 1 for s in sessions])
                asked = counts["error_reply"]
                await wait_for(lambda: held() and counts["error_reply"] >= asked + refused)
                await gatherer.committed()
                first = _refusals(db_url)
                assert len(first) == refused  # one per market, all open
                assert len({t for t, _, _ in first}) == refused
                assert all(end is None for _, _, end in first)
                assert ctx.gaps["subscription_refused"] == refused

                sim.market_cap = None  # room for every market: the retry subscribes them
                await wait_for(lambda: sum(len(c.subscribed) for c in books) == live)
                await gatherer.committed()
                closed = _refusals(db_url)
                assert [(t, s) for t, s, _ in closed] == [(t, s) for t, s, _ in first]
                assert all(end is not None and end > start for _, start, end in closed)
                assert ctx.refusals == {}

                sim.market_cap = CAP  # a second episode: refused again after a reconnect
                sessions = [c.sessions for c in books]
                sim.faults.drop_connections(abrupt=True)
                await wait_for(lambda: [c.sessions for c in books] == [s + 1 for s in sessions])
                await wait_for(lambda: held() and len(ctx.refusals) == refused)
                nursery.cancel_scope.cancel()  # a clean stop ends them
    rows = _refusals(db_url)
    assert len(rows) == 2 * refused
    assert all(end is not None and end >= start for _, start, end in rows)
    assert max(Counter(t for t, _, _ in rows).values()) <= 2
    assert ctx.gaps["subscription_refused"] == 2 * refused


async def test_a_killed_runs_open_gaps_end_where_it_stopped(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=12, active=4, rate=50.0, seed=8, port=0, start_us=PINNED_START_US, market_cap=CAP
    ) as sim:
        port = free_port()
        path = _config(sim, tmp_path, db_url, port)
        async with gatherer_processes(path) as start:
            with trio.fail_after(120):
                first = await start()
                await wait_for(lambda: len(_refusals(db_url)) == 12 - 2 * CAP)
                first.kill()  # SIGKILL: its refusal gaps stay open
                await first.wait()
                assert all(end is None for _, _, end in _refusals(db_url))
                with connect_db(db_url) as db:
                    [(stopped, first_conn)] = db.query(
                        "SELECT max(received_at), max(conn_id) FROM orderbook_snapshots"
                    )
                sim.market_cap = None
                second = await start()
                await _wait_live(port)
                await wait_for(lambda: all(end is not None for _, _, end in _refusals(db_url)))
                second.send_signal(signal.SIGTERM)
                assert await second.wait() == 0
    rows = _refusals(db_url)
    assert len(rows) == 12 - 2 * CAP  # the first run's, none more: every market subscribed
    with connect_db(db_url) as db:  # a connection's id is its connect time (µs)
        [(restarted,)] = db.query(
            "SELECT min(conn_id) FROM orderbook_snapshots WHERE conn_id > %s", [first_conn]
        )
    # each ends where the killed run's record ends (its newest receipt), before the restart
    assert all(end is not None and stopped <= end < restarted for _, _, end in rows)
