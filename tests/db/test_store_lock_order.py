"""Two writers inserting the same trades at once never deadlock (issue 20: a live batch
and a REST-backfill batch did): every batch goes into the table in key order, so both
take the unique index's locks in one order and the second simply waits for the first."""

from __future__ import annotations

import threading

from kalshi.models.rows import TradeRow
from kalshi.store import connect_db
from kalshi.store.insert import write_batch
from kalshi.store.pool import ConnectionPool
from kalshi.store.schema import TABLES

T0 = 1_767_225_600_000_000
ROUNDS = 20
ROWS = 300


def _trades(round_no: int) -> list[TradeRow]:
    return [
        TradeRow(
            exchange_ts=T0 + i,
            received_at=T0 + i,
            gatherer_id="g1",
            ticker="KXT-1",
            trade_id=f"r{round_no}-{i:04d}",
            price=42000,
            size=100,
            taker_side=False,
            is_block_trade=False,
            source="ws" if i % 2 else "rest",
            conn_id=1,
            frame_no=i,
            seq=round_no,
        )
        for i in range(ROWS)
    ]


def test_opposite_orders_of_one_batch_do_not_deadlock(db_url: str) -> None:
    pool = ConnectionPool(db_url, 2)
    spec = TABLES["trades"]
    errors: list[BaseException] = []
    inserted = [0, 0]
    barrier = threading.Barrier(2)

    def writer(index: int) -> None:
        try:
            with pool.connection() as pooled:
                for round_no in range(ROUNDS):
                    rows = _trades(round_no)
                    barrier.wait()
                    inserted[index] += write_batch(pooled, spec, rows[::-1] if index else rows)
        except BaseException as exc:  # a deadlock, reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pool.close()
    assert errors == []
    assert sum(inserted) == ROUNDS * ROWS
    with connect_db(db_url) as db:
        assert db.query("SELECT count(*), count(DISTINCT trade_id) FROM trades") == [
            (ROUNDS * ROWS, ROUNDS * ROWS)
        ]
