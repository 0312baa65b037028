"""`kalshi gather` as a process while PostgreSQL hangs (issue 18 item 3): SIGTERM exits
within ``shutdown_grace`` whatever the database does, and no row is lost: what could not be
written is in the spool, and the next store writes it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import attrs
import orjson
import trio

from kalshi.config import load_gatherer_config
from kalshi.journal import JournalRecord, read_journal
from kalshi.store import connect_db, open_store
from kalshi.testing import sim
from tests.gather.support import gatherer_yaml


async def test_sigterm_while_every_write_hangs_exits_and_loses_nothing(
    db_url: str, tmp_path: Path
) -> None:
    async with sim(markets=40, rate=3000.0, seed=11, port=0, active=20) as exchange:
        path = gatherer_yaml(
            exchange,
            tmp_path,
            db_url,
            gatherer_id="hung-1",
            kalshi={"rest_rate_limit": 100},
            # no bound at all on a statement: the worst case for shutdown
            timescaledb={"statement_timeout": 0, "lock_timeout": 0},
            shutdown_grace="1s",
        )
        with connect_db(db_url) as locker, connect_db(db_url) as watcher:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "kalshi", "gather", "--config", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                with trio.fail_after(60):
                    # recording (and writing) before the database hangs
                    while not watcher.query(  # noqa: ASYNC110 - another process writes
                        "SELECT 1 FROM orderbook_deltas LIMIT 1"
                    ) or not watcher.query("SELECT 1 FROM trades LIMIT 1"):
                        await trio.sleep(0.1)
                    locker.execute("BEGIN")
                    locker.execute("LOCK TABLE orderbook_deltas, trades IN ACCESS EXCLUSIVE MODE")
                    while not watcher.query(  # noqa: ASYNC110 - a writer waits on the lock
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    ):
                        await trio.sleep(0.05)
                    await trio.sleep(0.5)  # more rows arrive behind the hung writes
                    proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(30):
                    code = await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()  # the supervisor's SIGKILL: the test fails below
                    await proc.wait()
                locker.execute("ROLLBACK")
    assert proc.returncode == 0  # it exited by itself, the database still hung
    assert code == 0
    # the next run drains the spool into the database
    cfg = attrs.evolve(load_gatherer_config(path), gatherer_id="hung-2")
    with trio.fail_after(60):
        async with open_store(db_url, cfg.store, watermark=False) as store:
            await store.drain()
    deltas, trades = set(), set()
    for record in read_journal([tmp_path / "journal"]):
        assert isinstance(record, JournalRecord)
        if record.kind == "frame" and record.direction == "in":
            kind = orjson.loads(record.raw).get("type")
            if kind == "orderbook_delta":
                deltas.add((record.conn_id, record.frame_no))
            elif kind == "trade":
                trades.add((record.conn_id, record.frame_no))
    with connect_db(db_url) as db:
        stored_deltas = set(db.query("SELECT conn_id, frame_no FROM orderbook_deltas"))
        stored_trades = set(db.query("SELECT conn_id, frame_no FROM trades WHERE source = 'ws'"))
    print(f"hung database: {len(deltas)} deltas and {len(trades)} trades journaled, all stored")
    assert len(deltas) > 0 and len(trades) > 0
    assert stored_deltas == deltas
    assert stored_trades == trades
