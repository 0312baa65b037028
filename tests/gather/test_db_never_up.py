"""A gatherer started with its database down and stopped before the database ever came up
(SIGTERM, or kill -9): the next start, the database up, writes everything exactly once:
that run's rows (its spool and its journal), the run before's journal tail (which it never
got to write), and the gaps it left open (its outage gaps, the trade backfill it could not
commit). Every trade of the simulator once, each journaled row once, no gap left open, the
books equal."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from kalshi.sim import open_sim_exchange
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.testing import PINNED_START_US, free_port
from tests.gather.support import db_books, gatherer_processes, wait_for
from tests.gather.test_db_down_at_start import _db_state_is, wait_for_async
from tests.gather.test_restart import (
    _COMPARED,
    _config,
    _count,
    _journaled,
    _stored_rows,
    _wait_live,
)


def _rows_of(journal: Path, conns: set[int]) -> dict[str, list[tuple[Any, ...]]]:
    """Per compared table, the rows the live pipeline makes of ``conns``' journaled frames."""
    out: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _COMPARED}
    for item, rows in _journaled(journal):
        if item.conn_id in conns:
            for table, row in rows:
                if table in out and not (table == "trades" and row.source != "ws"):
                    out[table].append(tuple(getattr(row, c) for c in _COMPARED[table]))
    return out


def _conns(journal: Path) -> set[int]:
    return {item.conn_id for item, _ in _journaled(journal)}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_stopped_before_the_database_came_up_the_next_start_writes_it_all_once(
    own_pg: EmbeddedPostgres, tmp_path: Path, stop: signal.Signals
) -> None:
    url = own_pg.url
    journal = tmp_path / "journal"
    # the first run's rows wait in its writers' memory: kill -9 leaves them to its journal
    writers = {
        "trades": {"batch_size": 40, "flush_interval": "1h"},
        "tickers": {"batch_size": 100_000, "flush_interval": "1h"},
        "orderbook_deltas": {"flush_interval": "50ms"},
    }
    async with open_sim_exchange(
        markets=30, active=15, rate=400.0, seed=41, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()
        port = free_port()
        path = _config(sim, tmp_path, url, port, writers)
        migrate(url)
        async with gatherer_processes(path) as start:
            with trio.fail_after(200):
                # 1. The first run, killed with rows in memory: its tail is in the journal.
                first = await start()
                await _wait_live(port)
                before = len(sim.truth.trades)
                sim.engine.resume()
                await wait_for(lambda: _count(url, "SELECT count(*) FROM trades") >= 80)
                await wait_for(lambda: len(sim.truth.trades) >= before + 300)
                first.kill()
                await first.wait()
                sim.engine.pause()
                first_conns = _conns(journal)
                first_rows = _rows_of(journal, first_conns)
                # stored by then (some of them, received in the journal's last 200 ms
                # in memory, may not be journaled)
                first_stored = {t: _stored_rows(url, t, sorted(first_conns)) for t in _COMPARED}
                assert first_rows["tickers"] and first_stored["tickers"] == []

                # 2. The second run, the database down all its life.
                await trio.to_thread.run_sync(own_pg.stop_server)
                _config(sim, tmp_path, url, port)  # its writers flush every 50 ms
                second = await start()
                await _wait_live(port)
                await wait_for_async(lambda: _db_state_is(port, "down"))
                sim.engine.resume()

                def second_journaled() -> bool:
                    rows = _rows_of(journal, _conns(journal) - first_conns)
                    return len(rows["trades"]) >= 150 and len(rows["tickers"]) >= 20

                await wait_for(second_journaled, step=0.2)
                second.send_signal(stop)
                code = await second.wait()
                sim.engine.pause()
                assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
                second_conns = _conns(journal) - first_conns
                second_rows = _rows_of(journal, second_conns)
                spooled = sorted(p.parent.name for p in (tmp_path / "spool").rglob("*.batch"))
                if stop == signal.SIGTERM:  # its rows were spooled at the stop
                    assert {"trades", "tickers", "gaps"} <= set(spooled)

                # 3. The database back, a third run.
                await trio.to_thread.run_sync(own_pg.start)
                third = await start()
                await _wait_live(port)
                resumed = len(sim.truth.trades)
                sim.engine.resume()
                await wait_for(lambda: len(sim.truth.trades) >= resumed + 200)
                sim.engine.pause()
                expected = {t.trade_id for t in sim.truth.trades[before:]}
                await wait_for(
                    lambda: (
                        _count(url, "SELECT count(DISTINCT trade_id) FROM trades") >= len(expected)
                        and _count(url, "SELECT count(*) FROM gaps WHERE end_ts IS NULL") == 0
                        and all(
                            db_books(url).get(t) == sim.truth.book(t)
                            for t in sim.engine.active_tickers
                        )
                    ),
                    step=0.2,
                )
                third.send_signal(signal.SIGTERM)
                assert await third.wait() == 0
        books = db_books(url)
        for ticker in sim.engine.active_tickers:
            assert books[ticker] == sim.truth.book(ticker), ticker
    with connect_db(url) as db:
        stored = db.query("SELECT trade_id, count(*) FROM trades GROUP BY trade_id")
        outages = db.query("SELECT count(*), count(end_ts) FROM gaps WHERE kind = 'outage'")
        open_gaps = db.query("SELECT kind, detail FROM gaps WHERE end_ts IS NULL")
    # every trade of the simulator once (WebSocket or REST)
    assert dict(stored) == dict.fromkeys(expected, 1)
    # every row the first run journaled (its tail: written by the third run) and every row
    # the second run recorded (its spool and journal), exactly once
    for table in _COMPARED:
        want = sorted(set(first_rows[table]) | set(first_stored[table]))
        assert len(want) == len(first_rows[table]) + len(
            set(first_stored[table]) - set(first_rows[table])
        )
        assert sorted(_stored_rows(url, table, sorted(first_conns))) == want, table
        assert sorted(_stored_rows(url, table, sorted(second_conns))) == sorted(
            second_rows[table]
        ), table
    assert len(second_rows["tickers"]) >= 20
    # an outage per channel (5) at each of the two restarts, each closed; nothing left open
    assert outages == [(10, 10)]
    assert open_gaps == []
