"""The on-disk spool: exact round trip, order, leftovers of a killed writer, the lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalshi.errors import StoreError
from kalshi.models.rows import SnapshotRow, TradeRow
from kalshi.store.schema import TABLES
from kalshi.store.spool import Batch, Spool, lock_directory


def test_batches_round_trip_exactly_and_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, TABLES["orderbook_snapshots"])
    spool.load()
    rows = [
        SnapshotRow(1, None, 2, "g", "M—✓", "rest", "[[1, 2]]", "[]", 0, 0, None, None),
        SnapshotRow(3, 4, 5, "g", "M", "ws", "[]", "[[99999, 13601]]", 2**63 - 1, 9, 1, 2),
    ]
    spool.write(Batch(7, rows[1:]))
    spool.write(Batch(3, rows[:1]))
    reopened = Spool(tmp_path, TABLES["orderbook_snapshots"])
    reopened.load()
    assert (reopened.head(), reopened.max_seq(), reopened.files, reopened.rows) == (3, 7, 2, 2)
    assert reopened.read(3) == Batch(3, rows[:1])
    assert reopened.read(7) == Batch(7, rows[1:])
    assert reopened.bytes == sum(
        p.stat().st_size for p in (tmp_path / "orderbook_snapshots").iterdir()
    )
    reopened.remove(3)
    assert (reopened.head(), reopened.files) == (7, 1)


def test_incomplete_file_of_a_killed_writer_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path, TABLES["trades"])
    spool.load()
    row = TradeRow(1, 2, "g", "M", "t", 42000, 13601, True, False, "ws", 1, 1, None)
    spool.write(Batch(1, [row]))
    (tmp_path / "trades" / ".00000000000000000002.batch.tmp").write_bytes(b'{"format": 1, "ta')
    reopened = Spool(tmp_path, TABLES["trades"])
    reopened.load()
    assert (reopened.files, reopened.rows) == (1, 1)
    assert [p.name for p in (tmp_path / "trades" / "partial").iterdir()] == [
        "00000000000000000002.batch.tmp"
    ]


def test_spool_of_another_table_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, TABLES["trades"])
    spool.load()
    spool.write(Batch(1, [TradeRow(1, 2, "g", "M", "t", 1, 1, True, False, "ws", 1, 1, None)]))
    (tmp_path / "trades" / "00000000000000000001.batch").rename(
        tmp_path / "00000000000000000001.batch"
    )
    other = Spool(tmp_path, TABLES["gaps"])
    other.load()
    (tmp_path / "00000000000000000001.batch").rename(
        tmp_path / "gaps" / "00000000000000000001.batch"
    )
    other.load()
    with pytest.raises(StoreError, match="does not match table gaps"):
        other.read(1)


def test_spool_directory_is_locked_by_one_process(tmp_path: Path) -> None:
    held = lock_directory(tmp_path)
    try:
        with pytest.raises(StoreError, match="spool in use by another process"):
            lock_directory(tmp_path)
    finally:
        held.close()
    lock_directory(tmp_path).close()
