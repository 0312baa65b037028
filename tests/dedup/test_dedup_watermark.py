"""The ingest watermark is exclusive: a row received at exactly ``complete_before`` may still
be pending (it is the oldest pending row that sets it, :meth:`Store.complete_before`), so
the deduplicator reads a gatherer up to the microsecond before it, never through it.

Found chasing the scale proof's unequal book (tests/proof/test_scale.py, a loaded CI
machine): a row received a few ms before the exchange time it carries (the simulator
stamps ahead of its clock; so does an exchange whose clock runs ahead of the gatherer's)
sets the watermark at its own receipt while it waits in its batch; read through the
watermark, the cursor passed it before it landed and never read it. A delta so lost from
its source's stream leaves production's book of that market wrong for good (with no
other gatherer's rows consulted: nothing is cut), a trade so lost is missing when no other
gatherer has it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from dedup_support import dedup_config

from kalshi.book import OrderBook
from kalshi.config import Duration, GathererConfig, SpoolConfig, WriterConfig, WritersConfig
from kalshi.dedup import production_books
from kalshi.dedup.service import Deduplicator
from kalshi.models.rows import DeltaRow, Row, SnapshotRow, TradeRow
from kalshi.store import connect_db, open_store

T0 = 1_800_000_000_000_000  # µs
RECEIVED = T0 + 10_000  # the pending row's receipt, 3 ms before its exchange time
CONN = 7
TRADE_ID = "00000000-0000-4000-8000-000000000001"


def _snapshot() -> SnapshotRow:
    return SnapshotRow(
        snapshot_ts=T0,
        exchange_ts=None,
        received_at=T0,
        gatherer_id="g0",
        ticker="MKT",
        source="ws",
        yes_bids="[[40000, 1000]]",
        no_bids="[[55000, 500]]",
        conn_id=CONN,
        frame_no=1,
        sid=1,
        seq=1,
    )


def _delta(frame_no: int, exchange_ts: int, received_at: int, price: int, size: int) -> DeltaRow:
    return DeltaRow(
        exchange_ts=exchange_ts,
        received_at=received_at,
        gatherer_id="g0",
        ticker="MKT",
        side=True,
        price=price,
        size_delta=size,
        conn_id=CONN,
        frame_no=frame_no,
        sid=1,
        seq=1,
    )


def _trade(exchange_ts: int, received_at: int) -> TradeRow:
    return TradeRow(
        exchange_ts=exchange_ts,
        received_at=received_at,
        gatherer_id="g0",
        ticker="MKT",
        trade_id=TRADE_ID,
        price=42_000,
        size=300,
        taker_side=True,
        is_block_trade=False,
        source="ws",
        conn_id=CONN,
        frame_no=4,
        seq=4,
    )


def _cfg(tmp_path: Path, flush_interval: float) -> GathererConfig:
    writer = WriterConfig(1000, Duration(flush_interval))
    return GathererConfig(
        gatherer_id="g0",
        writers=WritersConfig(
            trades=writer,
            orderbook_deltas=writer,
            tickers=writer,
            orderbook_snapshots=writer,
            market_lifecycle=writer,
            markets=writer,
            gaps=writer,
        ),
        spool=SpoolConfig(dir=str(tmp_path / "spool"), dead_letter_dir=str(tmp_path / "dead")),
    )


@pytest.mark.parametrize("table", ["orderbook_deltas", "trades"])
async def test_a_row_pending_at_exactly_the_watermark_reaches_production(
    make_db: Callable[..., str], tmp_path: Path, table: str
) -> None:
    gatherer, production = make_db(), make_db()
    history: list[tuple[str, Row]] = [
        ("orderbook_snapshots", _snapshot()),
        ("orderbook_deltas", _delta(2, T0 + 1_000, T0 + 2_000, 40_000, 200)),
    ]
    pending: Row = (
        _delta(3, RECEIVED + 3_000, RECEIVED, 41_000, 700)
        if table == "orderbook_deltas"
        else _trade(RECEIVED + 3_000, RECEIVED)
    )
    with trio.fail_after(60):
        async with open_store(gatherer, _cfg(tmp_path, 0.05).store, watermark=False) as store:
            for name, row in history:
                async with store.sender(name) as send:
                    await send.send(row)
        # the deduplicator's clock: long after the rows (its settle leaves them all to read)
        dedup = Deduplicator(
            dedup_config(production, {"g0": gatherer}), wall_us=lambda: RECEIVED + 60_000_000
        )
        wall = [RECEIVED - 1_000]  # the gatherer's clock: the row arrives after it opened
        try:
            # a flush interval no test waits for: the row stays in its open batch
            slow = _cfg(tmp_path, 3_600.0).store
            async with open_store(gatherer, slow, wall_us=lambda: wall[0]) as store:
                async with store.sender(table) as send:
                    await send.send(pending)
                wall[0] = RECEIVED + 500
                mark = store.complete_before(wall[0])
                assert mark == RECEIVED  # held by the pending row, at its receipt
                with connect_db(gatherer) as db:  # what the store publishes every second
                    db.execute(
                        "INSERT INTO ingest_watermark (gatherer_id, complete_before, updated_at)"
                        " VALUES ('g0', %s, %s) ON CONFLICT (gatherer_id) DO UPDATE"
                        " SET complete_before = EXCLUDED.complete_before",
                        (mark, wall[0]),
                    )
                    assert db.count(table) == len([r for n, r in history if n == table])
                await dedup.run_pass(settle_us=0)
            # the store stopped: the row is committed, the watermark is its "now"
            await dedup.run_pass(settle_us=0)
        finally:
            dedup.close()
    book = OrderBook("MKT")
    book.yes = {40_000: 1_200} | ({41_000: 700} if table == "orderbook_deltas" else {})
    book.no = {55_000: 500}
    assert production_books(production) == {"MKT": book}
    with connect_db(production) as db:
        trades = db.query("SELECT trade_id, received_at FROM trades")
        cursors = dict(db.query("SELECT table_name, horizon FROM dedup_cursors"))
    assert trades == ([(TRADE_ID, RECEIVED)] if table == "trades" else [])
    assert cursors[table] == RECEIVED + 499  # through the µs before the final watermark
