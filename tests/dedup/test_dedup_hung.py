"""The deduplicator while a database hangs (issue 18 item 3, the deduplicator's side): a
locked production table or gatherer table fails the pass within ``sync.lock_timeout``
instead of holding it, /health says which, the next pass after the lock is gone completes
production exactly; and `kalshi dedup` stops within ``shutdown_grace`` on SIGTERM whatever
production does."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import yaml
from dedup_support import (
    MISSES,
    assert_production_is_truth,
    dedup_config,
    recordings,
    write_all,
    write_recording,
)

from kalshi.config import parse_duration
from kalshi.dedup.service import Deduplicator
from kalshi.errors import DatabaseUnavailable
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.testing.recording import covered, make_truth


async def test_a_locked_production_table_fails_the_pass_then_the_merge_completes(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(43, events=200)
    urls = await write_all(make_db, recordings(truth, MISSES), tmp_path)
    production = make_db()
    cfg = dedup_config(production, urls, lock_timeout=parse_duration("200ms"))
    dedup = Deduplicator(cfg)
    try:
        with connect_db(production) as locker:
            locker.execute("BEGIN")
            locker.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
            with trio.fail_after(60), pytest.raises(DatabaseUnavailable, match="lock timeout"):
                await dedup.run_pass(settle_us=0)
            health = dedup.health()
            locker.execute("ROLLBACK")
        assert health["status"] == "degraded"
        assert health["production"]["up"] is False
        assert "lock timeout" in health["production"]["error"]
        with trio.fail_after(60):
            await dedup.run_pass(settle_us=0)
        assert dedup.health()["production"]["up"] is True
    finally:
        dedup.close()
    assert_production_is_truth(production, truth, MISSES)


async def test_a_locked_gatherer_table_skips_that_gatherer_for_the_pass(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(44, events=200)
    urls = await write_all(make_db, recordings(truth, MISSES), tmp_path)
    production = make_db()
    cfg = dedup_config(production, urls, lock_timeout=parse_duration("200ms"))
    dedup = Deduplicator(cfg)
    try:
        with connect_db(urls["g1"]) as locker:
            locker.execute("BEGIN")
            locker.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
            with trio.fail_after(60):
                report = await dedup.run_pass(settle_us=0)
            health = dedup.health()
            locker.execute("ROLLBACK")
        assert report.skipped == ["g1"]
        assert health["gatherers"]["g1"]["up"] is False
        assert "lock timeout" in health["gatherers"]["g1"]["error"]
        with trio.fail_after(60):
            report = await dedup.run_pass(settle_us=0)
        assert report.skipped == []
    finally:
        dedup.close()
    # the keyed tables follow each gatherer's own cursor: g1's trades arrive on its return
    lists = list(MISSES.values())
    with connect_db(production) as db:
        trades = [t for (t,) in db.query("SELECT trade_id FROM trades ORDER BY trade_id")]
    assert trades == sorted(e.trade_id for e in covered(truth, lists, "trade"))


async def test_sigterm_while_production_hangs_stops_within_the_grace(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(45, events=200)
    urls = await write_all(make_db, recordings(truth, MISSES), tmp_path)
    production = make_db()
    config = {
        "gatherers": [{"id": g, "timescaledb": url} for g, url in urls.items()],
        "production": {"url": production},
        # no bound at all on a statement: the worst case for shutdown
        "sync": {"poll_interval": "50ms", "statement_timeout": 0, "lock_timeout": 0},
        "shutdown_grace": "1s",
        "http": {"port": 0},
        "metrics": {"enabled": False},
    }
    path = tmp_path / "dedup.yaml"
    path.write_text(yaml.safe_dump(config))
    with connect_db(production) as locker, connect_db(production) as watcher:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "kalshi", "dedup", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with trio.fail_after(60):
                while not watcher.query(  # noqa: ASYNC110 - another process waits on the lock
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                ):
                    await trio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(30):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()  # the supervisor's SIGKILL: the test fails below
                await proc.wait()
            locker.execute("ROLLBACK")
    assert proc.returncode == 0  # it exited by itself, production still locked
    # nothing half-written: a pass now completes production exactly
    dedup = Deduplicator(dedup_config(production, urls))
    try:
        with trio.fail_after(60):
            await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    assert_production_is_truth(production, truth, MISSES)


async def test_a_gatherer_database_restart_is_that_gatherers_failure_not_productions(
    make_db: Callable[..., str],
    own_pg: EmbeddedPostgres,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Outside tester (item 14): after only a gatherer's database restarted, the deduplicator
    # logged "production database unavailable" and marked production down: the merge's
    # connection to the gatherer failed and was taken for production's.
    truth = make_truth(46, events=200)
    recs = recordings(truth, MISSES)
    migrate(own_pg.url)
    await write_recording(own_pg.url, recs[0], tmp_path / "g0")
    urls = {"g0": own_pg.url, **await write_all(make_db, recs[1:], tmp_path)}
    production = make_db()
    dedup = Deduplicator(dedup_config(production, urls))
    skipped = []
    try:
        with trio.fail_after(60):
            await dedup.run_pass(settle_us=0)
            await trio.to_thread.run_sync(own_pg.stop)
            await trio.to_thread.run_sync(own_pg.start)
            # the probe's connection fails first, then the order-book merge's
            for _ in range(3):
                report = await dedup.run_pass(settle_us=0)
                skipped.append(report.skipped)
                assert dedup.health()["production"] == {"up": True, "error": ""}
    finally:
        dedup.close()
    assert skipped == [["g0"], ["g0"], []]
    lines = [r.getMessage() for r in caplog.records if r.name == "kalshi.dedup"]
    assert [line for line in lines if "unavailable" in line or "skipped" in line] == [
        line for line in lines if line.startswith("gatherer g0 skipped: ")
    ]
    # one line per failed connection (the probe's, then the merge's), naming the gatherer
    assert len([line for line in lines if line.startswith("gatherer g0 skipped: ")]) == 2
    assert_production_is_truth(production, truth, MISSES)
