"""A pending trade backfill survives any number of restarts (outside tester item 1): the
first gatherer is killed; the second records the WebSocket while REST answers 429 (its
backfill of the first outage cannot run) and is killed too; the third, with REST back,
fetches from the first outage on. Every trade of the simulator exactly once, and a
``backfill`` gap is closed only once its trades are committed."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import httpx
import trio

from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US, free_port
from tests.gather.support import gatherer_processes, wait_for
from tests.gather.test_restart import _config, _count, _wait_live


async def _trade_live(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            doc = (await client.get(f"http://127.0.0.1:{port}/health")).json()
    except httpx.HTTPError:
        return False
    return any(c["channel"] == "trade" and c["state"] == "live" for c in doc["connections"])


def _backfills(db_url: str) -> list[tuple[int, int | None]]:
    with connect_db(db_url) as db:
        return db.query("SELECT start_ts, end_ts FROM gaps WHERE kind = 'backfill' ORDER BY 1")


async def test_a_second_kill_before_the_backfill_loses_nothing(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=30, active=15, rate=400.0, seed=29, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()  # trades before the recorder is subscribed cannot be recorded
        port = free_port()
        path = _config(sim, tmp_path, db_url, port)

        async def kill(proc: trio.Process) -> None:
            proc.kill()  # SIGKILL: no flush, no shutdown code
            await proc.wait()

        def trades() -> int:
            return _count(db_url, "SELECT count(*) FROM trades")

        async with gatherer_processes(path) as start:
            with trio.fail_after(180):
                first = await start()
                await _wait_live(port)
                before = len(sim.truth.trades)
                sim.engine.resume()
                await wait_for(lambda: trades() >= 150)
                await kill(first)
                first_down = len(sim.truth.trades)
                await wait_for(lambda: len(sim.truth.trades) >= first_down + 200)
                sim.faults.rest_429(3600.0)  # REST refuses: no listing, no backfill
                second = await start()
                while not await _trade_live(port):  # noqa: ASYNC110 - another process
                    await trio.sleep(0.05)
                stored = trades()
                await wait_for(lambda: trades() >= stored + 300)  # WebSocket trades
                await kill(second)
                # the first outage's trades are still due: an open backfill gap says so
                pending = [start for start, end in _backfills(db_url) if end is None]
                missed = [t.exchange_ts for t in sim.truth.trades[first_down:]]
                assert len(pending) >= 1 and min(pending) <= min(missed)
                second_down = len(sim.truth.trades)
                await wait_for(lambda: len(sim.truth.trades) >= second_down + 200)
                sim.faults.rest_429_until = -math.inf  # REST answers again
                third = await start()
                await _wait_live(port)
                await wait_for(lambda: len(sim.truth.trades) >= second_down + 400)
                sim.engine.pause()
                expected = {t.trade_id for t in sim.truth.trades[before:]}
                await wait_for(
                    lambda: (
                        _count(db_url, "SELECT count(DISTINCT trade_id) FROM trades")
                        >= len(expected)
                        and all(end is not None for _, end in _backfills(db_url))
                    )
                )
                third.send_signal(signal.SIGTERM)
                assert await third.wait() == 0
        truth = sim.truth
    with connect_db(db_url) as db:
        stored_ids = db.query("SELECT trade_id, count(*) FROM trades GROUP BY trade_id")
        outages = db.query("SELECT end_ts FROM gaps WHERE kind = 'outage'")
    assert {tid: n for tid, n in stored_ids} == {t.trade_id: 1 for t in truth.trades[before:]}
    # The second run's window (from the first outage on) was still open at the third
    # start, whose window starts there too: one gap, the same row, closed by the third.
    [(start, end)] = _backfills(db_url)
    assert end is not None
    assert start <= min(t.exchange_ts for t in truth.trades[first_down:])
    assert end > max(t.exchange_ts for t in truth.trades[:second_down])
    assert all(end is not None for (end,) in outages)
