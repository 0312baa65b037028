"""The ingest watermark: what a gatherer guarantees is committed, for the deduplicator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import trio
import trio.testing

from kalshi.clock import system_wall_us
from kalshi.config import StoreConfig
from kalshi.store import connect_db, open_store
from tests.db.test_store_writer import trade


async def test_a_pending_row_holds_the_watermark_and_the_final_one_is_now(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    cfg = make_cfg(flush_interval=30.0, batch_size=1000)
    async with open_store(db_url, cfg) as store:
        async with store.sender("trades") as send:
            await send.send(trade(1, received_at=1_000))
            await send.send(trade(2, received_at=900))
            await trio.testing.wait_all_tasks_blocked()
        now = system_wall_us()
        # two rows wait in the open batch (30 s flush interval): nothing before 900 is sure
        assert store.complete_before(now) == 900
    stopped = system_wall_us()
    with connect_db(db_url) as db:
        (mark,) = db.query(
            "SELECT complete_before FROM ingest_watermark WHERE gatherer_id = %s",
            (cfg.gatherer_id,),
        )
        assert db.count("trades") == 2
    # flushed on the way out: everything received is committed, the watermark is "now"
    assert now <= mark[0] <= stopped


async def test_with_nothing_pending_the_watermark_is_now(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    cfg = make_cfg(flush_interval=0.05)
    async with open_store(db_url, cfg) as store:
        now = 5_000_000_000
        assert store.complete_before(now) == now


async def test_a_row_counts_from_the_moment_it_is_handed_over(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    # No checkpoint between the send and the check: the writer has not seen the row yet,
    # the watermark already has (rows in channels are not a time slack any more).
    cfg = make_cfg(flush_interval=30.0, batch_size=1000)
    now = 9_000_000_000
    async with open_store(db_url, cfg) as store, store.sender("trades") as send:
        assert store.complete_before(now) == now
        send.send_nowait(trade(1, received_at=7_000, exchange_ts=8_000))
        assert store.complete_before(now) == 7_000


async def test_committed_returns_once_the_database_acknowledged_every_row(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    cfg = make_cfg(flush_interval=0.05, batch_size=7)
    rows = [trade(i) for i in range(50)]
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            async with store.sender("trades") as send:
                for row in rows:
                    await send.send(row)
            await store.committed()
            with connect_db(db_url) as db:
                assert db.count("trades") == 50
            assert store.collected()["trades"] == 50
            assert store.complete_before(9_000_000_000_000_000) == 9_000_000_000_000_000


async def test_holds_and_old_exchange_times_keep_the_watermark_back(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    cfg = make_cfg(flush_interval=30.0, batch_size=1000)
    now = 9_000_000_000
    async with open_store(db_url, cfg) as store:
        store.hold(("disconnect", "trade-0", 1), 4_000_000_000)
        assert store.complete_before(now) == 4_000_000_000
        store.release(("disconnect", "trade-0", 1))
        assert store.complete_before(now) == now
        # a trade backfilled over REST: received now, made long ago
        async with store.sender("trades") as send:
            await send.send(trade(3, exchange_ts=2_500, received_at=now))
            await trio.testing.wait_all_tasks_blocked()
        assert store.complete_before(now) == 2_500


async def test_the_injected_wall_clock_stamps_the_watermark_and_the_dead_letters(
    db_url: str, make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    cfg = make_cfg(flush_interval=30.0, batch_size=1000)
    wall_us = lambda: 7_777_000_000  # noqa: E731
    async with open_store(db_url, cfg, wall_us=wall_us) as store, store.sender("trades") as send:
        await send.send(trade(1, received_at=1_000))
        await send.send(trade(2, received_at=900, price=100_001))  # breaks trades_price_check
    with connect_db(db_url) as db:
        (mark,) = db.query(
            "SELECT complete_before, updated_at FROM ingest_watermark WHERE gatherer_id = %s",
            (cfg.gatherer_id,),
        )
        assert db.count("trades") == 1
    # everything was handled on the way out: the watermark is the injected "now"
    assert mark == (7_777_000_000, 7_777_000_000)
    (line,) = (tmp_path / "dead-letter" / "trades.jsonl").read_text().splitlines()
    assert json.loads(line)["at_us"] == 7_777_000_000


async def test_the_first_watermark_is_recorded_at_open_and_keeps_a_previous_runs(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    # Issue 18 item 6: rows without a watermark read as finished history to the
    # deduplicator; a new gatherer database has one before any row can be committed.
    cfg = make_cfg()
    clock = [5_000_000]
    query = "SELECT complete_before, updated_at FROM ingest_watermark WHERE gatherer_id = %s"
    async with open_store(db_url, cfg, wall_us=lambda: clock[0]) as store:
        with connect_db(db_url) as db:
            assert db.query(query, (cfg.gatherer_id,)) == [(5_000_000, 5_000_000)]
        assert store.opened_at == 5_000_000
        clock[0] = 6_000_000
    with connect_db(db_url) as db:
        assert db.query(query, (cfg.gatherer_id,)) == [(6_000_000, 6_000_000)]  # the final one
    clock[0] = 9_000_000
    async with open_store(db_url, cfg, wall_us=lambda: clock[0]) as store:
        with connect_db(db_url) as db:
            # the previous run's stays: restart recovery reads where it stopped
            assert db.query(query, (cfg.gatherer_id,)) == [(6_000_000, 6_000_000)]
        assert store.opened_at == 9_000_000
