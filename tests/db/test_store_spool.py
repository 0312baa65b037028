"""The on-disk spool: exact round trip, order, leftovers of a killed writer, the lock."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kalshi.errors import StoreError
from kalshi.models.rows import SnapshotRow, TradeRow
from kalshi.store.schema import TABLES
from kalshi.store.spool import Batch, Spool, lock_directory


def test_batches_round_trip_exactly_and_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, TABLES["orderbook_snapshots"])
    spool.load()
    rows = [
        SnapshotRow(
            snapshot_ts=1,
            exchange_ts=None,
            received_at=2,
            gatherer_id="g",
            ticker="M—✓",
            source="rest",
            yes_bids="[[1, 2]]",
            no_bids="[]",
            conn_id=0,
            frame_no=0,
            sid=None,
            seq=None,
        ),
        SnapshotRow(
            snapshot_ts=3,
            exchange_ts=4,
            received_at=5,
            gatherer_id="g",
            ticker="M",
            source="ws",
            yes_bids="[]",
            no_bids="[[99999, 13601]]",
            conn_id=2**63 - 1,
            frame_no=9,
            sid=1,
            seq=2,
        ),
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
    row = TradeRow(
        exchange_ts=1,
        received_at=2,
        gatherer_id="g",
        ticker="M",
        trade_id="t",
        price=42000,
        size=13601,
        taker_side=True,
        is_block_trade=False,
        source="ws",
        conn_id=1,
        frame_no=1,
        seq=None,
    )
    spool.write(Batch(1, [row]))
    (tmp_path / "trades" / ".00000000000000000002.batch.tmp").write_bytes(b'{"format": 1, "ta')
    reopened = Spool(tmp_path, TABLES["trades"])
    reopened.load()
    assert (reopened.files, reopened.rows) == (1, 1)
    assert [p.name for p in (tmp_path / "trades" / "partial").iterdir()] == [
        "00000000000000000002.batch.tmp"
    ]


def trades(n: int) -> list[TradeRow]:
    return [
        TradeRow(
            exchange_ts=10 + i,
            received_at=20 + i,
            gatherer_id="g",
            ticker="M",
            trade_id=f"t-{i}",
            price=42_000 + i,
            size=100,
            taker_side=True,
            is_block_trade=False,
            source="ws",
            conn_id=1,
            frame_no=i,
            seq=i,
        )
        for i in range(n)
    ]


def damaged_lines() -> float:
    value = REGISTRY.get_sample_value("kalshi_store_spool_damaged_lines_total", {"table": "trades"})
    return value or 0.0


def spooled_file(tmp_path: Path, rows: list[TradeRow], seq: int = 1) -> Path:
    spool = Spool(tmp_path, TABLES["trades"])
    spool.load()
    spool.write(Batch(seq, rows))
    return tmp_path / "trades" / f"{seq:020d}.batch"


def test_a_flipped_byte_costs_its_row_only(tmp_path: Path) -> None:
    # Issue 18 item 4: a flipped byte was written silently (a trade id never made).
    rows = trades(5)
    path = spooled_file(tmp_path, rows)
    data = bytearray(path.read_bytes())
    lines = bytes(data).split(b"\n")
    at = sum(len(line) + 1 for line in lines[:3]) + lines[3].index(b"t-2") + 2
    data[at] ^= 0x01  # "t-2" -> "t-3": valid JSON, a trade id the exchange never made
    path.write_bytes(bytes(data))
    before = damaged_lines()
    reopened = Spool(tmp_path, TABLES["trades"])
    reopened.load()
    assert reopened.read(1) == Batch(1, rows[:2] + rows[3:])
    assert damaged_lines() - before == 1
    assert (tmp_path / "trades" / "quarantine" / path.name).read_bytes() == bytes(data)


def test_a_truncated_batch_keeps_its_complete_rows(tmp_path: Path) -> None:
    rows = trades(5)
    path = spooled_file(tmp_path, rows)
    data = path.read_bytes()
    cut = data.index(b"t-3") + 1  # inside row 4 of 5
    path.write_bytes(data[:cut])
    before = damaged_lines()
    reopened = Spool(tmp_path, TABLES["trades"])
    reopened.load()
    assert reopened.read(1) == Batch(1, rows[:3])
    assert damaged_lines() - before == 2  # the torn line, and the one row missing after it


def test_a_damaged_header_costs_no_row(tmp_path: Path) -> None:
    rows = trades(3)
    path = spooled_file(tmp_path, rows)
    data = bytearray(path.read_bytes())
    data[12] ^= 0x20  # inside the header's JSON
    path.write_bytes(bytes(data))
    reopened = Spool(tmp_path, TABLES["trades"])
    reopened.load()
    assert (reopened.files, reopened.rows) == (1, 3)
    assert reopened.read(1) == Batch(1, rows)


def test_the_good_rows_of_a_killed_writer_are_spooled_again(tmp_path: Path) -> None:
    rows = trades(4)
    path = spooled_file(tmp_path, rows, seq=9)
    data = path.read_bytes()
    path.unlink()
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data[: data.index(b"t-2") + 1])  # killed while writing row 3
    reopened = Spool(tmp_path, TABLES["trades"])
    reopened.load()
    assert (reopened.head(), reopened.files, reopened.rows) == (9, 1, 2)
    assert reopened.read(9) == Batch(9, rows[:2])
    assert (tmp_path / "trades" / "partial" / f"{path.name}.tmp").is_file()


def test_spool_of_another_table_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, TABLES["trades"])
    spool.load()
    spool.write(
        Batch(
            1,
            [
                TradeRow(
                    exchange_ts=1,
                    received_at=2,
                    gatherer_id="g",
                    ticker="M",
                    trade_id="t",
                    price=1,
                    size=1,
                    taker_side=True,
                    is_block_trade=False,
                    source="ws",
                    conn_id=1,
                    frame_no=1,
                    seq=None,
                )
            ],
        )
    )
    (tmp_path / "trades" / "00000000000000000001.batch").rename(
        tmp_path / "00000000000000000001.batch"
    )
    other = Spool(tmp_path, TABLES["gaps"])
    other.load()
    (tmp_path / "00000000000000000001.batch").rename(
        tmp_path / "gaps" / "00000000000000000001.batch"
    )
    other.load()
    assert other.read(1) == Batch(1, [])
    assert (tmp_path / "gaps" / "quarantine" / "00000000000000000001.batch").is_file()


def test_spool_directory_is_locked_by_one_process(tmp_path: Path) -> None:
    held = lock_directory(tmp_path)
    try:
        with pytest.raises(StoreError, match="spool in use by another process"):
            lock_directory(tmp_path)
    finally:
        held.close()
    lock_directory(tmp_path).close()


def test_rows_spool_as_arrays_and_earlier_files_still_read(tmp_path: Path) -> None:
    """A row (a ``NamedTuple``) is written as the JSON array of its values: UTF-8 as it is,
    an integer beyond 64 bits exactly. A file spooled before (``json.dumps``: non-ASCII as
    ``\\u`` escapes) reads back the same rows, so an upgrade keeps what the spool held."""
    rows = trades(2)
    rows[0] = rows[0]._replace(ticker="M—✓")
    rows[1] = rows[1]._replace(size=2**70)
    path = spooled_file(tmp_path, rows)
    lines = path.read_bytes().splitlines()
    assert lines[1][9:] == (
        b'[10,20,"g","M\xe2\x80\x94\xe2\x9c\x93","t-0",42000,100,true,false,"ws",1,0,0]'
    )
    assert (
        lines[2][9:] == b'[11,21,"g","M","t-1",42001,1180591620717411303424,true,false,"ws",1,1,1]'
    )
    reopened = Spool(tmp_path, TABLES["trades"])
    reopened.load()
    assert reopened.read(1) == Batch(1, rows)

    bodies = [json.dumps(list(row), separators=(",", ":")).encode() for row in rows]
    assert b"\\u2014" in bodies[0]
    earlier = [lines[0], *(b"%08x " % zlib.crc32(body) + body for body in bodies)]
    path.write_bytes(b"\n".join(earlier) + b"\n")
    again = Spool(tmp_path, TABLES["trades"])
    again.load()
    assert again.read(1) == Batch(1, rows)
