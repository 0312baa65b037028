"""The database unreachable when the gatherer starts (outside tester item 4): it starts
anyway and records (journal, memory, spool); when the database answers it migrates a
never-migrated schema before the first write, writes what waited, and reads what the
previous run left (its journal tail, the trades it left due). Every trade of the
simulator exactly once, the books equal."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio

from kalshi.sim import open_sim_exchange
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.testing import PINNED_START_US, free_port
from tests.gather.support import db_books, gatherer_processes, wait_for
from tests.gather.test_restart import (
    _config,
    _count,
    _journaled,
    _journaled_rows,
    _stored_rows,
    _wait_live,
)


async def _health(port: int) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        doc: dict[str, object] = (await client.get(f"http://127.0.0.1:{port}/health")).json()
    return doc


async def _db_state(port: int) -> str:
    db = (await _health(port))["db"]
    assert isinstance(db, dict)
    return str(db["state"])


def _tables(url: str) -> int:
    return _count(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'trades'")


async def _run(
    own_pg: EmbeddedPostgres, tmp_path: Path, seed: int, *, first_run: bool
) -> tuple[list[tuple[str, int]], set[str], bool]:
    """A gatherer started with the database down (after a first run killed mid-burst
    with batches in memory when ``first_run``), the database back later; returns the
    stored trades (id, copies), the simulator's, and whether the books matched."""
    url = own_pg.url
    writers = {  # kill -9 loses the batches in memory: the journal has them
        "trades": {"batch_size": 40, "flush_interval": "1h"},
        "tickers": {"batch_size": 100_000, "flush_interval": "1h"},
        "orderbook_deltas": {"flush_interval": "50ms"},
    }
    tickers: list[tuple[object, ...]] = []
    conns: list[int] = []
    async with open_sim_exchange(
        markets=30, active=15, rate=400.0, seed=seed, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()
        port = free_port()
        path = _config(sim, tmp_path, url, port, writers if first_run else None)

        async with gatherer_processes(path) as start:
            with trio.fail_after(150):
                before = len(sim.truth.trades)
                if first_run:
                    migrate(url)
                    first = await start()
                    await _wait_live(port)
                    sim.engine.resume()
                    await wait_for(lambda: _count(url, "SELECT count(*) FROM trades") >= 80)
                    await wait_for(lambda: len(sim.truth.trades) >= before + 300)
                    first.kill()  # its last trades batch only in memory and the journal
                    await first.wait()
                    sim.engine.pause()
                    journal = tmp_path / "journal"
                    conns = sorted({item.conn_id for item, _ in _journaled(journal)})
                    tickers = _journaled_rows(journal)["tickers"]
                    assert tickers and _stored_rows(url, "tickers", conns) == []
                await trio.to_thread.run_sync(own_pg.stop_server)
                _config(sim, tmp_path, url, port)  # its writers flush every 50 ms
                second = await start()  # the database refuses connections
                await _wait_live(port)
                await wait_for_async(lambda: _db_state_is(port, "down"))
                if not first_run:
                    assert (await _health(port))["status"] == "degraded"
                sim.engine.resume()
                down_at = len(sim.truth.trades)
                await wait_for(lambda: len(sim.truth.trades) >= down_at + 300)
                await trio.to_thread.run_sync(own_pg.start)
                await wait_for_async(lambda: _db_state_is(port, "up"))
                await wait_for(lambda: len(sim.truth.trades) >= down_at + 500)
                sim.engine.pause()
                expected = {t.trade_id for t in sim.truth.trades[before:]}
                await wait_for(
                    lambda: (
                        _count(url, "SELECT count(DISTINCT trade_id) FROM trades") >= len(expected)
                        # the first run's journal tail is written once the database answers
                        and sorted(_stored_rows(url, "tickers", conns)) == sorted(tickers)
                        and all(
                            db_books(url).get(t) == sim.truth.book(t)
                            for t in sim.engine.active_tickers
                        )
                    ),
                    step=0.2,
                )
                books = all(
                    db_books(url).get(t) == sim.truth.book(t) for t in sim.engine.active_tickers
                )
                second.send_signal(signal.SIGTERM)
                assert await second.wait() == 0
    with connect_db(url) as db:
        stored = db.query("SELECT trade_id, count(*) FROM trades GROUP BY trade_id")
    # the first run's tickers (never flushed): written from its journal once the database
    # answered, each once
    assert sorted(_stored_rows(url, "tickers", conns)) == sorted(tickers)
    return stored, expected, books


async def _db_state_is(port: int, state: str) -> bool:
    try:
        return await _db_state(port) == state
    except httpx.HTTPError:
        return False


async def wait_for_async(predicate: object) -> None:
    while not await predicate():  # type: ignore[operator]  # noqa: ASYNC110 - another process
        await trio.sleep(0.05)


async def test_a_never_migrated_database_down_at_start_is_migrated_when_back(
    own_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    assert _tables(own_pg.url) == 0
    stored, expected, books = await _run(own_pg, tmp_path, 31, first_run=False)
    assert dict(stored) == dict.fromkeys(expected, 1)
    assert books
    assert _tables(own_pg.url) == 1


async def test_a_database_down_at_a_restart_loses_nothing_of_either_run(
    own_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    stored, expected, books = await _run(own_pg, tmp_path, 37, first_run=True)
    assert dict(stored) == dict.fromkeys(expected, 1)
    assert books
