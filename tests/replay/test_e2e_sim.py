"""End to end: the gatherer records the simulator (with faults); its journal replays to the
same rows, and re-served over WebSocket it feeds a second gatherer to the same data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from kalshi.auth import Signer, load_private_key
from kalshi.book import OrderBook
from kalshi.config import GathererConfig
from kalshi.gather.service import Gatherer
from kalshi.journal import read_journal
from kalshi.models.rows import TradeRow
from kalshi.replay import Replayer, ReplayFilter, book_from_db, replay_into_db
from kalshi.replay.serve import WS_PATH, serve_recording
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for

pytestmark = pytest.mark.slow


def gatherer_config(sim: Any, tmp: Path, db_url: str, ws_url: str, gid: str) -> GathererConfig:
    return sim_config(
        sim,
        tmp,
        db_url,
        **{
            "gatherer_id": gid,
            "kalshi.ws_url": ws_url or sim.ws_url,
            "writers.tickers.flush_interval": "100ms",
            "spool.dir": str(tmp / gid / "spool"),
            "spool.dead_letter_dir": str(tmp / gid / "dead"),
            "journal.dir": str(tmp / gid / "journal"),
            "journal.compress": True,
        },
    )


def live_everywhere(gatherer: Gatherer) -> bool:
    layout = gatherer.layout
    return layout is not None and all(c.state == "live" for c in layout.connections)


# The rows a replay reproduces: everything derived from WebSocket frames, the trades of
# the REST backfill (journaled pages) and the gatherer's own gaps (journaled gap markers).
# Not the market listing (``markets``), nor the REST snapshot poller's books (off here).
WS_ROWS = {
    "orderbook_deltas": "TRUE",
    "orderbook_snapshots": "source = 'ws'",
    "tickers": "TRUE",
    "market_lifecycle": "TRUE",
    "trades": "TRUE",
    "gaps": "TRUE",
}


def rows(url: str, table: str, where: str = "TRUE") -> set[tuple[Any, ...]]:
    with connect_db(url) as db:
        return set(db.fetch_rows(table, where))


async def record_a_run(sim: Any, tmp: Path, db_url: str) -> tuple[Gatherer, Path]:
    cfg = gatherer_config(sim, tmp, db_url, sim.ws_url, "live")
    signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
    gatherer = Gatherer(cfg, db_url, signer=signer)
    async with trio.open_nursery() as nursery:
        await nursery.start(gatherer.run)
        await wait_for(lambda: live_everywhere(gatherer))
        counts = gatherer.processor.counts
        gaps = gatherer.ctx.gaps  # type: ignore[union-attr]
        connections = len(gatherer.layout.connections)  # type: ignore[union-attr]
        await wait_for(lambda: counts["trade"] >= 20)  # some real traffic first
        sim.faults.skip_seq(1)
        malformed = sim.faults.send_malformed("json")  # one per connection
        await wait_for(lambda: counts["seq_gap"] >= 1 and counts["invalid"] == malformed)
        sim.faults.drop_connections(abrupt=True)
        await wait_for(lambda: gaps["reconnect"] == connections and live_everywhere(gatherer))
        traded = counts["trade"]
        await wait_for(lambda: counts["trade"] >= traded + 20)  # traffic after the reconnect
        sim.engine.pause()
        await wait_for(lambda: not gatherer.processor.stale)
        await gatherer.committed()  # backfills handed over, every row acknowledged
        nursery.cancel_scope.cancel()
    return gatherer, tmp / "live" / "journal"


async def test_journal_replays_to_the_live_rows_and_serves_a_second_gatherer(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with open_sim_exchange(
            markets=30, active=8, rate=300.0, seed=11, start_us=PINNED_START_US
        ) as sim:
            live, journal = await record_a_run(sim, tmp_path, db_url)

            # 1. The journal replays to exactly the live run's WebSocket rows.
            stats = await replay_into_db(
                read_journal([journal]),
                other_db_url,
                gatherer_config(sim, tmp_path, "", "", "r").store,
            )
            assert stats.problems == []
            for table, where in WS_ROWS.items():
                replayed = rows(other_db_url, table)
                if table == "trades":
                    # A trade both the WebSocket and the REST backfill delivered is stored
                    # once (its key), from whichever copy came first: same trades.
                    assert {(r[0], r[4]) for r in replayed} == {
                        (r[0], r[4]) for r in rows(db_url, table, where)
                    }
                else:
                    assert replayed == rows(db_url, table, where), table
            assert stats.rows["orderbook_deltas"] > 0 and stats.rows["trades"] > 0
            injected = sim.truth.faults_injected["skip_seq"]
            seq_gaps = rows(other_db_url, "gaps", "kind = 'seq_gap'")
            assert len(seq_gaps) == live.processor.counts["seq_gap"] == injected > 0

            # Replaying again adds nothing.
            with connect_db(other_db_url) as db:
                before = db.counts()
            await replay_into_db(
                read_journal([journal]),
                other_db_url,
                gatherer_config(sim, tmp_path, "", "", "r").store,
            )
            with connect_db(other_db_url) as db:
                assert db.counts() == before

            # 2. Re-served over WebSocket to an unmodified gatherer: the same data.
            await _serve_to_second_gatherer(sim, journal, tmp_path, db_url, other_db_url)


def content(url: str, table: str) -> Counter[tuple[Any, ...]]:
    """Rows without the recorder's identity (gatherer, connection, frame, receive time)."""
    columns = {
        "orderbook_deltas": "ticker, side, price, size_delta, exchange_ts",
        "tickers": "ticker, exchange_ts, yes_bid, yes_ask, last_price, volume, open_interest",
        "market_lifecycle": "ticker, event_type, payload::text",
        "trades": "trade_id, exchange_ts, ticker, price, size, taker_side",
    }[table]
    with connect_db(url) as db:
        return Counter(db.query(f"SELECT {columns} FROM {table}"))


async def _serve_to_second_gatherer(
    sim: Any, journal: Path, tmp: Path, live_url: str, scratch_url: str
) -> None:
    """``scratch_url`` holds the replayed journal: the second gatherer, fed by the served
    recording, must store the same WebSocket data (with its own identity columns).

    Trades: its REST backfill (windows of *its* clock, +-1 s) may store a recorded trade
    from REST first, and may add trades the live run backfilled too; by content, every
    journal trade is there and nothing else but live trades."""
    want = {t: content(scratch_url, t) for t in ("orderbook_deltas", "tickers", "market_lifecycle")}
    # the journal's WebSocket trades (the served recording has no REST pages)
    want["trades"] = Counter(
        (r.trade_id, r.exchange_ts, r.ticker, r.price, r.size, r.taker_side)
        for table, r in Replayer().feed_all(read_journal([journal]))
        if table == "trades" and isinstance(r, TradeRow) and r.source == "ws"
    )
    with connect_db(scratch_url) as db:
        for table in (
            "orderbook_deltas",
            "orderbook_snapshots",
            "tickers",
            "market_lifecycle",
            "trades",
            "gaps",
        ):
            db.execute(f"DELETE FROM {table}")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            serve_recording, lambda: read_journal([journal]), 0, ReplayFilter(), None
        )
        cfg = gatherer_config(sim, tmp, scratch_url, f"ws://127.0.0.1:{port}{WS_PATH}", "second")
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        second = Gatherer(cfg, scratch_url, signer=signer)
        await nursery.start(second.run)
        with trio.move_on_after(20):
            await wait_for(lambda: all(_arrived(scratch_url, t, n) for t, n in want.items()))
        nursery.cancel_scope.cancel()
    for table, expected in want.items():
        got = content(scratch_url, table)
        missing = expected - got
        extra = got - expected
        if table == "trades":
            extra -= content(live_url, "trades")
        assert (table, missing, extra) == (table, Counter(), Counter())
    with connect_db(live_url) as db:
        tickers = [t for (t,) in db.query("SELECT DISTINCT ticker FROM orderbook_snapshots")]
    with connect_db(live_url) as live_db, connect_db(scratch_url) as second_db:
        for ticker in tickers:
            assert book_from_db(second_db, ticker).book == book_from_db(live_db, ticker).book
            assert book_from_db(live_db, ticker).book == _truth(sim, ticker)


def _arrived(url: str, table: str, expected: Counter[tuple[Any, ...]]) -> bool:
    got = content(url, table)
    return not expected - got if table == "trades" else got == expected


def _truth(sim: Any, ticker: str) -> OrderBook:
    book: OrderBook = sim.truth.book(ticker)
    return book
