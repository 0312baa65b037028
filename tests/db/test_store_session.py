"""The store's session (what the deduplicator reads and writes through): statement and lock
timeouts bound every statement, a COPY of rows that turn out to exist falls back to the
staged insert, a staging table serves many transactions, and the advisory lock names its
holder."""

from __future__ import annotations

import pytest

from kalshi.errors import DatabaseUnavailable, StoreError
from kalshi.models.rows import TradeRow
from kalshi.store import connect_db, staging
from kalshi.store.session import Session


def _trade(n: int) -> TradeRow:
    return TradeRow(
        exchange_ts=1_700_000_000_000_000 + n,
        received_at=1_700_000_000_100_000 + n,
        gatherer_id="g1",
        ticker="KX-A",
        trade_id=f"t{n}",
        price=42,
        size=n,
        taker_side=True,
        is_block_trade=False,
        source="ws",
        conn_id=1,
        frame_no=n,
        seq=None,
    )


def test_statement_timeout_fails_a_long_statement_as_unavailable(db_url: str) -> None:
    session = Session(db_url, autocommit=True, statement_timeout=0.2)
    try:
        with pytest.raises(DatabaseUnavailable, match="statement timeout"):
            session.query("SELECT pg_sleep(30)")
        session.close()
        assert session.query("SELECT 1") == [(1,)]  # opened again
    finally:
        session.close()


def test_lock_timeout_fails_a_write_to_a_locked_table_as_unavailable(db_url: str) -> None:
    holder = Session(db_url)
    writer = Session(db_url, lock_timeout=0.2)
    try:
        with holder.transaction():
            holder.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
            with (
                pytest.raises(DatabaseUnavailable, match="lock timeout"),
                writer.transaction(),
            ):
                writer.insert_skipping("trades", [_trade(1)])
    finally:
        holder.close()
        writer.close()


def test_copy_new_falls_back_to_the_staged_insert_when_a_row_exists(db_url: str) -> None:
    session = Session(db_url, stage_prefix="_test_")
    try:
        with session.transaction():
            assert session.copy_new("trades", [_trade(1), _trade(2)]) == 2
        with session.transaction():
            assert session.copy_new("trades", [_trade(2), _trade(3), _trade(4)]) == 2
        with session.transaction():
            assert session.insert_skipping("trades", [_trade(4), _trade(5)]) == 1
    finally:
        session.close()
    with connect_db(db_url) as db:
        rows = db.fetch_rows("trades")
    assert [r.trade_id for r in rows] == ["t1", "t2", "t3", "t4", "t5"]


def test_advisory_lock_is_refused_naming_the_holder(db_url: str) -> None:
    first, second = Session(db_url), Session(db_url)
    try:
        assert first.try_advisory_lock(7) is None
        pid = first.query("SELECT pg_backend_pid()")[0][0]
        held = second.try_advisory_lock(7)
        assert held is not None and held.pid == pid and held.client
        first.close()
        # taken although the server ends the closed session's backend (and releases its
        # lock) only after close() returned: a restarted process is not refused by itself
        assert second.try_advisory_lock(7) is None
    finally:
        first.close()
        second.close()


def test_each_staged_insert_sees_only_its_own_rows_across_truncations(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage keeps rows across commits (``ON COMMIT PRESERVE ROWS``) and is emptied
    before each use: by DELETE, and by TRUNCATE every ``STAGE_TRUNCATE_ROWS`` rows."""
    monkeypatch.setattr(staging, "STAGE_TRUNCATE_ROWS", 5)
    session = Session(db_url, stage_prefix="_test_")
    inserted = []
    try:
        for start in range(0, 12, 2):  # six batches of two: truncated after 6 and 12 rows
            with session.transaction():
                inserted.append(
                    session.insert_skipping("trades", [_trade(start), _trade(start + 1)])
                )
        with session.transaction():
            staged = session.query("SELECT count(*) FROM _test_trades")
    finally:
        session.close()
    assert inserted == [2, 2, 2, 2, 2, 2]
    assert staged == [(2,)]  # the last batch only: committed, not emptied at commit
    with connect_db(db_url) as db:
        rows = db.fetch_rows("trades")
    assert [r.trade_id for r in rows] == [f"t{n}" for n in range(12)]


def test_a_stage_created_in_a_rolled_back_transaction_is_created_again(db_url: str) -> None:
    session = Session(db_url, stage_prefix="_test_")
    try:
        with pytest.raises(StoreError), session.transaction():
            assert session.insert_skipping("trades", [_trade(1)]) == 1
            session.execute("SELECT 1/0")
        with session.transaction():
            assert session.insert_skipping("trades", [_trade(1), _trade(2)]) == 2
    finally:
        session.close()
    with connect_db(db_url) as db:
        rows = db.fetch_rows("trades")
    assert [r.trade_id for r in rows] == ["t1", "t2"]


def test_insert_committed_writes_what_is_new_with_its_statements_or_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction in few round trips: the stage's rows inserted skipping stored ones,
    a statement over the rows inserted, the follow-up statements, the stage left empty
    (TRUNCATE every ``STAGE_TRUNCATE_ROWS`` rows); a failure writes nothing of it, and a
    stage filled by :meth:`Session.insert_skipping` in between is emptied first."""
    monkeypatch.setattr(staging, "STAGE_TRUNCATE_ROWS", 5)
    with connect_db(db_url) as db:
        db.execute("CREATE TABLE IF NOT EXISTS seen (n bigint, at bigint)")
        db.execute("TRUNCATE seen")
    session = Session(db_url, stage_prefix="_test_")
    seen = ("INSERT INTO seen SELECT count(*), min(exchange_ts) FROM inserted", ())
    note = ("INSERT INTO seen VALUES (%s, %s)", (-1, 0))
    try:
        first = session.insert_committed("trades", [_trade(1), _trade(2)], on_inserted=seen)
        again = session.insert_committed("trades", [_trade(2), _trade(3)], on_inserted=seen)
        with pytest.raises(StoreError, match="division by zero"):
            session.insert_committed("trades", [_trade(4)], then=[note, ("SELECT 1/0", ())])
        with session.transaction():  # leaves its rows in the stage
            assert session.insert_skipping("trades", [_trade(3), _trade(5)]) == 1
        last = session.insert_committed("trades", [_trade(4), _trade(6)], then=[note])
        with session.transaction():
            staged = session.query("SELECT count(*) FROM _test_trades")
    finally:
        session.close()
    assert (first, again, last) == (2, 1, 2)
    assert staged == [(0,)]
    base = 1_700_000_000_000_000
    with connect_db(db_url) as db:
        rows = db.fetch_rows("trades")
        assert db.query("SELECT n, at FROM seen") == [(2, base + 1), (1, base + 3), (-1, 0)]
    assert [r.trade_id for r in rows] == [f"t{n}" for n in range(1, 7)]
