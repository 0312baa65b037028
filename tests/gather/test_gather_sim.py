"""The gatherer against the real simulator and a real PostgreSQL, with injected faults.
Exact counts from the simulator's ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from kalshi.auth import Signer, load_private_key
from kalshi.gather.service import Gatherer
from kalshi.journal import JournalRecord, read_journal
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import db_books, sim_config, wait_for


def stored_trades(db_url: str) -> set[str]:
    with connect_db(db_url) as db:
        return {tid for (tid,) in db.query("SELECT trade_id FROM trades")}


def signer_of(sim: object) -> Signer:
    return Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))  # type: ignore[attr-defined]


def all_live(gatherer: Gatherer) -> bool:
    layout = gatherer.layout
    return layout is not None and all(c.state == "live" for c in layout.connections)


def settled(gatherer: Gatherer, sim: object) -> bool:
    """Every active market's live book equals the engine's (the engine is paused)."""
    truth = sim.truth  # type: ignore[attr-defined]
    books = gatherer.processor.books
    return not gatherer.processor.stale and all(
        books.get(t) == truth.book(t)
        for t in sim.engine.active_tickers  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("transport", ["websockets", "trio-websocket"])
async def test_faults_lose_nothing(db_url: str, tmp_path: Path, transport: str) -> None:
    async with open_sim_exchange(
        markets=60, active=12, rate=400.0, seed=5, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()  # trades before the recorder exists cannot be recorded
        before = len(sim.truth.trades)
        cfg = sim_config(sim, tmp_path, db_url, **{"websocket.transport": transport})
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                await wait_for(lambda: all_live(gatherer))
                counts = gatherer.processor.counts
                gaps = gatherer.ctx.gaps  # type: ignore[union-attr]
                sim.engine.resume()
                await wait_for(lambda: len(sim.truth.trades) >= before + 50)
                dropped = len(gatherer.layout.connections)  # type: ignore[union-attr]
                sim.faults.drop_connections(abrupt=True)
                await wait_for(lambda: gaps["reconnect"] == dropped and all_live(gatherer))
                sim.faults.skip_seq(1)
                await wait_for(lambda: counts["seq_gap"] == 3)
                sim.faults.repeat_seq(1)
                await wait_for(lambda: counts["duplicate"] == 3)
                bad = sim.faults.send_malformed("json")  # one per connection
                sim.faults.send_malformed("unknown_type")
                await wait_for(lambda: counts["invalid"] == counts["unknown_type"] == bad)
                sim.engine.pause()
                await wait_for(lambda: settled(gatherer, sim))
                # a trade frame may still be on its socket: wait until the database has them
                expected = {t.trade_id for t in sim.truth.trades[before:]}
                await wait_for(lambda: expected <= stored_trades(db_url))
                await gatherer.committed()  # backfills handed over, every row acknowledged
                nursery.cancel_scope.cancel()
        truth = sim.truth
        injected = dict(truth.faults_injected)

    with connect_db(db_url) as db:
        stored = db.query("SELECT trade_id, count(*) FROM trades GROUP BY trade_id")
        gap_kinds = dict(db.query("SELECT kind, count(*) FROM gaps GROUP BY kind"))
        open_kinds = db.query("SELECT DISTINCT kind FROM gaps WHERE end_ts IS NULL")
    # every trade from the moment the recorder was subscribed, each exactly once
    assert {tid: n for tid, n in stored} == {t.trade_id: 1 for t in truth.trades[before:]}
    books = db_books(db_url)
    for ticker in sim.engine.active_tickers:
        assert books[ticker] == truth.book(ticker), ticker
    counts = gatherer.processor.counts
    # six connections (two order-book, trade, ticker, lifecycle, combo lifecycle): one drop
    # each, two malformed frames each
    assert injected == {"drop_abrupt": 6, "skip_seq": 3, "repeat_seq": 3, "malformed": 12}
    # the trade channel's drop and seq gap: a REST backfill each, closed once committed
    assert gap_kinds == {
        "reconnect": injected["drop_abrupt"],
        "seq_gap": injected["skip_seq"],
        "backfill": 2,
    }
    assert open_kinds == []
    assert counts["seq_gap"] == injected["skip_seq"]
    assert counts["duplicate"] == injected["repeat_seq"]
    assert (counts["invalid"], counts["unknown_type"]) == (6, 6)
    # every received frame is in the journal, before anything else happened to it
    frames = [
        r
        for r in read_journal([tmp_path / "journal"])
        if isinstance(r, JournalRecord) and r.kind == "frame" and r.direction == "in"
    ]
    assert len(frames) == sum(c.messages for c in gatherer.layout.connections)  # type: ignore[union-attr]
