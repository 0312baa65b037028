"""A journal recorded through JournalWriter replays into a real PostgreSQL: exact rows, twice
changes nothing, damaged journals replay everything else and name each problem."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import pytest
import trio
from replay_support import (
    BASE_US,
    GATHERER,
    OB_CONN,
    T1,
    T2,
    TRADE_CONN,
    ListSink,
    as_stored,
    delta,
    scripted_session,
    snapshot,
    store_config,
    stored,
    subscribed,
    write_journal,
)

from kalshi.errors import StoreError
from kalshi.journal import JournalProblem, read_journal
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow, TradeRow
from kalshi.replay import Replayer, replay, replay_into_db
from kalshi.replay.writer_process import Writers
from kalshi.store import connect_db, migrate


def _at(n: int, offset: int = 0) -> int:
    return BASE_US + 100 * n + offset


EXPECTED: list[tuple[str, Row]] = [
    (
        "orderbook_snapshots",
        SnapshotRow(
            snapshot_ts=_at(2),
            exchange_ts=None,
            received_at=_at(2),
            gatherer_id=GATHERER,
            ticker=T1,
            source="ws",
            yes_bids="[[40000,1000],[42000,500]]",
            no_bids="[[55000,700]]",
            conn_id=OB_CONN,
            frame_no=2,
            sid=1,
            seq=1,
        ),
    ),
    (
        "orderbook_snapshots",
        SnapshotRow(
            snapshot_ts=_at(3),
            exchange_ts=None,
            received_at=_at(3),
            gatherer_id=GATHERER,
            ticker=T2,
            source="ws",
            yes_bids="[[10000,100]]",
            no_bids="[]",
            conn_id=OB_CONN,
            frame_no=3,
            sid=1,
            seq=2,
        ),
    ),
    (
        "orderbook_deltas",
        DeltaRow(
            exchange_ts=1_795_561_141_100_000,
            received_at=_at(4),
            gatherer_id=GATHERER,
            ticker=T1,
            side=True,
            price=42000,
            size_delta=-200,
            conn_id=OB_CONN,
            frame_no=4,
            sid=1,
            seq=3,
        ),
    ),
    (
        "orderbook_deltas",
        DeltaRow(
            exchange_ts=1_795_561_141_200_000,
            received_at=_at(5),
            gatherer_id=GATHERER,
            ticker=T2,
            side=False,
            price=60000,
            size_delta=350,
            conn_id=OB_CONN,
            frame_no=5,
            sid=1,
            seq=4,
        ),
    ),
    (
        "gaps",
        GapRow(
            start_ts=_at(5),
            end_ts=_at(7),
            gatherer_id=GATHERER,
            conn_id=OB_CONN,
            sid=1,
            ticker=None,
            kind="seq_gap",
            expected_seq=5,
            got_seq=7,
            detail="orderbook_delta: 2 frame(s) missing; resnapshot 2 market(s)",
        ),
    ),
    (
        "orderbook_deltas",
        DeltaRow(
            exchange_ts=1_795_561_141_300_000,
            received_at=_at(7),
            gatherer_id=GATHERER,
            ticker=T1,
            side=True,
            price=40000,
            size_delta=100,
            conn_id=OB_CONN,
            frame_no=7,
            sid=1,
            seq=7,
        ),
    ),
    (
        "orderbook_snapshots",
        SnapshotRow(
            snapshot_ts=_at(8),
            exchange_ts=None,
            received_at=_at(8),
            gatherer_id=GATHERER,
            ticker=T1,
            source="ws",
            yes_bids="[[40000,1100]]",
            no_bids="[]",
            conn_id=OB_CONN,
            frame_no=8,
            sid=1,
            seq=8,
        ),
    ),
    (
        "orderbook_deltas",
        DeltaRow(
            exchange_ts=1_795_561_141_400_000,
            received_at=_at(9),
            gatherer_id=GATHERER,
            ticker=T1,
            side=True,
            price=41000,
            size_delta=200,
            conn_id=OB_CONN,
            frame_no=9,
            sid=1,
            seq=9,
        ),
    ),
    (
        "trades",
        TradeRow(
            exchange_ts=1_795_561_141_250_000,
            received_at=_at(2, 50),
            gatherer_id=GATHERER,
            ticker=T1,
            trade_id="tr-1",
            price=42000,
            size=300,
            taker_side=True,
            is_block_trade=False,
            source="ws",
            conn_id=TRADE_CONN,
            frame_no=2,
            seq=1,
        ),
    ),
    (
        "trades",
        TradeRow(
            exchange_ts=1_795_561_141_250_000,
            received_at=_at(3, 50),
            gatherer_id=GATHERER,
            ticker=T2,
            trade_id="tr-2",
            price=11000,
            size=100,
            taker_side=True,
            is_block_trade=False,
            source="ws",
            conn_id=TRADE_CONN,
            frame_no=3,
            seq=2,
        ),
    ),
]


WRITERS = pytest.mark.parametrize("writers", ["inline", "process"])


@WRITERS
async def test_scripted_journal_replays_to_exact_rows(
    db_url: str, tmp_path: Path, writers: Writers
) -> None:
    files = await write_journal(tmp_path / "journal", scripted_session())
    with trio.fail_after(60):
        stats = await replay_into_db(
            read_journal(files), db_url, store_config(tmp_path), writers=writers
        )
    assert stored(db_url) == as_stored(EXPECTED)
    assert (stats.records, stats.frames, stats.markers) == (16, 12, 3)
    assert stats.problems == []
    assert dict(stats.frame_problems) == {"invalid": 1}
    assert dict(stats.rows) == {
        "orderbook_snapshots": 3,
        "orderbook_deltas": 4,
        "gaps": 1,
        "trades": 2,
    }
    assert dict(stats.written) == dict(stats.rows)
    assert (stats.duplicate, stats.updated, stats.left) == ({}, {}, {})


@WRITERS
async def test_replaying_twice_adds_nothing(db_url: str, tmp_path: Path, writers: Writers) -> None:
    files = await write_journal(tmp_path / "journal", scripted_session(), compress=True)
    cfg = store_config(tmp_path)
    with trio.fail_after(60):
        first = await replay_into_db(read_journal(files), db_url, cfg, writers=writers)
        once = stored(db_url)
        with connect_db(db_url) as db:
            counts = db.counts()
        again = await replay_into_db(read_journal(files), db_url, cfg, writers=writers)
    assert stored(db_url) == once == as_stored(EXPECTED)
    assert dict(first.written) == dict(again.duplicate) == dict(first.rows)
    assert (again.written, again.updated, again.left) == ({}, {}, {})
    with connect_db(db_url) as db:
        assert db.counts() == counts
    assert sum(counts.values()) == len(EXPECTED)


async def _rows_of(paths: list[Path]) -> tuple[list[tuple[str, Row]], list[JournalProblem]]:
    sink = ListSink()
    replayer = Replayer()
    stats = await replay(read_journal(paths), sink, replayer=replayer)
    return sink.rows, stats.problems


async def test_garbage_and_truncated_lines_skip_only_themselves(tmp_path: Path) -> None:
    entries = scripted_session()
    (path,) = await write_journal(tmp_path / "journal", entries)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(entries) + 1
    # Line 7 (the trade with seq 1) becomes garbage bytes; line 11 (T2's delta, seq 4) is
    # cut short.
    garbage, truncated = 7, 11
    lines[garbage - 1] = b"\x00\xff\xfe\x9c garbage"
    lines[truncated - 1] = lines[truncated - 1][:40]
    path.write_bytes(b"\n".join(lines))

    damaged_rows, problems = await _rows_of([path])

    kept = [e for i, e in enumerate(entries, 1) if i not in (garbage, truncated)]
    (clean,) = await write_journal(tmp_path / "clean", kept)
    clean_rows, clean_problems = await _rows_of([clean])
    assert clean_problems == []
    assert damaged_rows == clean_rows
    assert [(p.path, p.line_no) for p in problems] == [(str(path), 7), (str(path), 11)]
    assert problems[0].reason.startswith("invalid JSON")
    assert problems[1].reason.startswith("invalid JSON")
    # The losses are visible downstream: the trade sid's first frame is now seq 2 (a gap:
    # a fresh sid starts at 1), and the order-book gap now starts at seq 4.
    gaps = [(r.kind, r.expected_seq, r.got_seq) for _, r in damaged_rows if isinstance(r, GapRow)]
    assert gaps == [("seq_gap", 1, 2), ("seq_gap", 4, 7)]
    assert [r.trade_id for _, r in damaged_rows if isinstance(r, TradeRow)] == ["tr-2"]


async def test_torn_zstd_tail_replays_the_complete_frames(tmp_path: Path) -> None:
    entries = scripted_session()
    split = 9
    (path,) = await write_journal(tmp_path / "journal", entries, compress=True, flush_after=split)
    (first,) = await write_journal(tmp_path / "first", entries[:split], compress=True)
    boundary = first.stat().st_size
    data = path.read_bytes()
    assert data[:boundary] == first.read_bytes()  # the first flush is one complete zstd frame
    path.write_bytes(data[: boundary + 12])  # the second frame torn after its header

    rows, problems = await _rows_of([path])
    first_rows, _ = await _rows_of([first])
    assert rows == first_rows
    assert problems == [
        JournalProblem(str(path), split + 1, "torn zstd tail (incomplete last frame)")
    ]


def _many_deltas(n: int) -> list[tuple[object, ...]]:
    """One order-book connection: a snapshot, then ``n`` deltas that add and take back."""
    frames = [subscribed(1, "orderbook_delta"), snapshot(1, 1, T1, yes=[("0.4000", "10.00")])]
    for i in range(n):
        size = "1.00" if i % 2 == 0 else "-1.00"
        frames.append(delta(1, i + 2, T1, "0.4000", size, ts_ms=1_795_561_141_000 + i))
    return [("in", OB_CONN, k, BASE_US + 10 * k, raw) for k, raw in enumerate(frames, 1)]


@WRITERS
async def test_a_replay_bigger_than_memory_reports_only_what_is_committed(
    db_url: str, empty_db_url: str, tmp_path: Path, writers: Writers
) -> None:
    files = await write_journal(tmp_path / "journal", _many_deltas(3_000))
    cfg = store_config(tmp_path, batch_size=50, memory_rows=100, grace=1.0)
    spool = Path(cfg.spool.dir) / "replay"
    # The first target is unreachable: nothing is committed, everything stays spooled
    # (for that database only) and the replay says so.
    nowhere = "postgresql://postgres@127.0.0.1:1/nowhere"
    with trio.fail_after(60):
        lost = await replay_into_db(read_journal(files), nowhere, cfg, writers=writers)
    assert (lost.written, lost.duplicate) == ({}, {})
    assert lost.left == {"orderbook_deltas": 3_000, "orderbook_snapshots": 1}
    assert (spool / "DATABASE").read_text() == "127.0.0.1:1/nowhere\n"
    # Another database is never given those rows: the spool is refused, nothing written.
    with trio.fail_after(60), pytest.raises(StoreError, match="holds 3001 rows for database"):
        await replay_into_db(read_journal(files), db_url, cfg, writers=writers)
    with connect_db(db_url) as db:
        assert db.counts()["orderbook_deltas"] == 0
    # A fresh spool: more rows than spool.memory_rows, all committed before the replay ends.
    shutil.rmtree(spool)
    migrate(empty_db_url)
    with trio.fail_after(120):
        stats = await replay_into_db(read_journal(files), empty_db_url, cfg, writers=writers)
    assert stats.rows["orderbook_deltas"] == 3_000
    assert stats.written == {"orderbook_deltas": 3_000, "orderbook_snapshots": 1}
    assert stats.left == {}
    with connect_db(empty_db_url) as db:
        assert db.counts()["orderbook_deltas"] == 3_000
    assert sorted(p.name for p in spool.rglob("*.batch")) == []


async def test_a_killed_writer_process_is_one_error_and_replaying_again_adds_the_rest(
    db_url: str, tmp_path: Path
) -> None:
    """The writer process killed (SIGKILL) before the first batch reaches it: one
    StoreError naming the exit code; the journal replayed again writes every row once."""
    files = await write_journal(tmp_path / "journal", _many_deltas(3_000))
    cfg = store_config(tmp_path)
    killed: list[int] = []

    def kill_the_writer(_: int) -> None:
        if not killed:
            (child,) = multiprocessing.active_children()
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            killed.append(child.pid)  # type: ignore[arg-type]

    with trio.fail_after(60), pytest.raises(StoreError) as raised:
        await replay_into_db(
            read_journal(files), db_url, cfg, writers="process", on_progress=kill_the_writer
        )
    assert str(raised.value) == (
        "the replay's writer process died (exit code -9): rows it had not committed are not"
        " written; they are in the journal, and replaying it again writes only those (rows"
        " already stored are skipped by their keys)"
    )
    assert multiprocessing.active_children() == []
    with trio.fail_after(60):
        stats = await replay_into_db(read_journal(files), db_url, cfg, writers="process")
    assert stats.written == {"orderbook_deltas": 3_000, "orderbook_snapshots": 1}
    with connect_db(db_url) as db:
        assert db.counts()["orderbook_deltas"] == 3_000


async def test_a_cancelled_replay_stops_its_writer_process_cleanly(
    db_url: str, tmp_path: Path
) -> None:
    """Cancelled (as Ctrl-C cancels it) before a batch was sent: the pipe closes, the writer
    process ends its store and exits 0, nothing is left in its spool; replayed again, every
    row is written once."""
    files = await write_journal(tmp_path / "journal", _many_deltas(3_000))
    cfg = store_config(tmp_path)
    children: list[multiprocessing.process.BaseProcess] = []
    with trio.fail_after(60), trio.CancelScope() as scope:

        def cancel(_: int) -> None:
            if not children:
                children.extend(multiprocessing.active_children())
                scope.cancel()

        await replay_into_db(
            read_journal(files), db_url, cfg, writers="process", on_progress=cancel
        )
    assert scope.cancelled_caught
    (child,) = children
    assert (child.is_alive(), child.exitcode) == (False, 0)
    assert sorted(p.name for p in (Path(cfg.spool.dir) / "replay").rglob("*.batch")) == []
    with connect_db(db_url) as db:
        assert db.counts()["orderbook_deltas"] == 0
    with trio.fail_after(60):
        stats = await replay_into_db(read_journal(files), db_url, cfg, writers="process")
    assert stats.written == {"orderbook_deltas": 3_000, "orderbook_snapshots": 1}
