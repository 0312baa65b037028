"""Flush timing, size and hour rotation, cancellation and backpressure (virtual time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from journal_support import BASE_WALL, inline, journal_config, virtual_wall
from prometheus_client import REGISTRY

from kalshi.config import JournalConfig
from kalshi.errors import JournalError
from kalshi.journal import JournalRecord, JournalWriter, read_journal
from kalshi.journal.format import encode_frame

FRAME = '{"type":"orderbook_delta","sid":1,"seq":%d,"msg":{"market_ticker":"T","delta_fp":"1.00"}}'


def frame(n: int) -> str:
    return FRAME % n


def line(n: int, conn: int = 1) -> bytes:
    return encode_frame("g-1", conn, n, "in", n, n, frame(n))


def virtual_writer(cfg: JournalConfig, **options: Any) -> JournalWriter:
    """Gatherer g-1's journal writer on the virtual clock, its file work run inline."""
    return JournalWriter(cfg, "g-1", virtual_wall, run_sync=inline, **options)


def buffer_gauge() -> float:
    return REGISTRY.get_sample_value("kalshi_journal_buffer_bytes") or 0.0


def names(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]


async def test_flush_waits_for_the_interval(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = virtual_writer(journal_config(tmp_path), flush_interval=0.5)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.record_frame(1, 1, "in", 1, 1, frame(1))
            await trio.sleep(0.4)
            assert writer.records_written == 0
            assert writer.buffered_bytes == len(line(1))
            await trio.sleep(0.2)
            assert writer.records_written == 1
            assert writer.buffered_bytes == 0
            assert writer.current_path is not None
            assert writer.current_path.read_bytes() == line(1)
            nursery.cancel_scope.cancel()


async def test_flush_early_once_flush_bytes_are_buffered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = virtual_writer(journal_config(tmp_path), flush_interval=3600, flush_bytes=1000)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            count = 1000 // len(line(1)) + 1
            for n in range(1, count + 1):
                writer.record_frame(1, n, "in", n, n, frame(n))
            await trio.testing.wait_all_tasks_blocked()
            assert writer.records_written == count
            assert trio.current_time() == 0
            nursery.cancel_scope.cancel()


async def test_rotation_by_size(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    numbers = range(11, 21)  # same digit count: every line has the same size
    size = len(line(11))
    assert {len(line(n)) for n in numbers} == {size}
    cfg = journal_config(tmp_path, rotate_bytes=3 * size)
    writer = virtual_writer(cfg, flush_interval=3600)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in numbers:
                writer.record_frame(1, n, "in", n, n, frame(n))
            await writer.flush()
            assert len(writer.files_closed) == 3
            nursery.cancel_scope.cancel()
    assert names(writer.files_closed) == [
        f"2026-11-24/g-1-20261124T225900-{n}.jsonl" for n in (1, 2, 3, 4)
    ]
    contents = [p.read_bytes() for p in writer.files_closed]
    assert contents == [
        line(11) + line(12) + line(13),
        line(14) + line(15) + line(16),
        line(17) + line(18) + line(19),
        line(20),
    ]
    got = [r.frame_no for r in read_journal([tmp_path]) if isinstance(r, JournalRecord)]
    assert got == list(numbers)


async def test_a_record_bigger_than_rotate_bytes_gets_a_file_of_its_own(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = journal_config(tmp_path, rotate_bytes=10)
    writer = virtual_writer(cfg, flush_interval=3600)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(1, 4):
                writer.record_frame(1, n, "in", n, n, frame(n))
            nursery.cancel_scope.cancel()
    assert [p.read_bytes() for p in writer.files_closed] == [line(1), line(2), line(3)]


async def test_rotation_at_the_hour_and_the_day(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # 22:59:00 -> 23:00 edge -> 00:00 edge (next day directory)
    writer = virtual_writer(journal_config(tmp_path), flush_interval=3600)
    with trio.fail_after(7200):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.record_frame(1, 1, "in", 1, 1, frame(1))
            await writer.flush()
            await trio.sleep_until(30)
            writer.record_frame(1, 2, "in", 2, 2, frame(2))
            await writer.flush()
            assert writer.files_closed == []
            await trio.sleep_until(61)  # 23:00:01
            await writer.flush()  # nothing buffered: the hour's file is closed anyway
            assert names(writer.files_closed) == ["2026-11-24/g-1-20261124T225900-1.jsonl"]
            writer.record_frame(1, 3, "in", 3, 3, frame(3))
            await writer.flush()
            await trio.sleep_until(3660 + 5)  # 00:00:05 next day
            writer.record_frame(1, 4, "in", 4, 4, frame(4))
            await writer.flush()
            nursery.cancel_scope.cancel()
    assert names(writer.files_closed) == [
        "2026-11-24/g-1-20261124T225900-1.jsonl",
        "2026-11-24/g-1-20261124T230001-2.jsonl",
        "2026-11-25/g-1-20261125T000005-3.jsonl",
    ]
    assert [p.read_bytes() for p in writer.files_closed] == [
        line(1) + line(2),
        line(3),
        line(4),
    ]
    assert BASE_WALL % 3600 == 3540


async def test_idle_interval_rotation_by_the_run_loop(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = virtual_writer(journal_config(tmp_path), flush_interval=1.0)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.record_frame(1, 1, "in", 1, 1, frame(1))
            await trio.sleep(59.5)
            assert writer.files_closed == []
            await trio.sleep(1)  # the first loop turn after 23:00:00
            assert writer.records_written == 1
            nursery.cancel_scope.cancel()
    # opened by the first flush (22:59:01), closed by the first flush after 23:00:00
    assert names(writer.files_closed) == ["2026-11-24/g-1-20261124T225901-1.jsonl"]


async def test_cancellation_flushes_everything_recorded(tmp_path: Path) -> None:
    for compress in (False, True):
        cfg = journal_config(tmp_path / str(compress), compress=compress)
        writer = JournalWriter(cfg, "g-1", flush_interval=3600, flush_bytes=1 << 30)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                for n in range(1, 5001):
                    writer.record_frame(1, n, "in", n, n, frame(n))
                assert writer.records_written == 0
                nursery.cancel_scope.cancel()
        assert writer.records_written == 5000
        assert writer.current_path is None
        assert len(writer.files_closed) == 1
        got = list(read_journal(writer.files_closed))
        assert [r.frame_no for r in got if isinstance(r, JournalRecord)] == list(range(1, 5001))
        assert len(got) == 5000


async def test_cancellation_during_a_flush_loses_nothing(tmp_path: Path) -> None:
    writer = JournalWriter(journal_config(tmp_path, compress=True), "g-1", flush_bytes=1)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(1, 2001):
                writer.record_frame(1, n, "in", n, n, frame(n))
                if n % 100 == 0:
                    await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
    got = [r.frame_no for r in read_journal(writer.files_closed) if isinstance(r, JournalRecord)]
    assert got == list(range(1, 2001))


async def test_pressure_is_reported_never_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    size = len(line(1))
    writer = virtual_writer(
        journal_config(tmp_path),
        flush_interval=3600,
        flush_bytes=1 << 30,
        max_buffer_bytes=5 * size,
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            depth_before = buffer_gauge()
            for n in range(1, 9):
                writer.record_frame(1, n, "in", n, n, frame(n))
            assert buffer_gauge() - depth_before == 8 * size
            assert writer.pressure
            assert writer.pressure_records == 3
            assert writer.buffered_bytes == 8 * size
            await writer.flush()
            assert not writer.pressure
            assert writer.records_written == 8
            assert buffer_gauge() == depth_before
            nursery.cancel_scope.cancel()
    assert writer.files_closed[0].read_bytes() == b"".join(line(n) for n in range(1, 9))


async def test_two_connections_interleave_in_order(tmp_path: Path) -> None:
    writer = JournalWriter(journal_config(tmp_path), "g-1")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(1, 4):
                writer.record_frame(1, n, "in", n, n, frame(n))
                writer.record_frame(2, n, "in", n, n, frame(n))
            nursery.cancel_scope.cancel()
    got = [
        (r.conn_id, r.frame_no) for r in read_journal([tmp_path]) if isinstance(r, JournalRecord)
    ]
    assert got == [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 3)]


async def test_disk_refusal_is_a_journal_error(tmp_path: Path) -> None:
    blocker = tmp_path / "journal"
    blocker.write_bytes(b"a file where the journal directory should be")
    writer = JournalWriter(journal_config(tmp_path), "g-1", flush_interval=0.01)
    writer.record_frame(1, 1, "in", 1, 1, frame(1))
    refused = f"{blocker / 'g-1'}: cannot use the journal directory: Not a directory"
    with trio.fail_after(30), pytest.RaisesGroup(pytest.RaisesExc(JournalError, match=refused)):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await trio.sleep_forever()
    # the record was put back, not lost
    assert writer.records_written == 0
    assert writer.buffered_bytes == len(line(1))


async def test_recording_after_run_returned_is_an_error(tmp_path: Path) -> None:
    writer = JournalWriter(journal_config(tmp_path), "g-1")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            nursery.cancel_scope.cancel()
    assert writer.files_closed == []
    with pytest.raises(RuntimeError, match="closed"):
        writer.record_frame(1, 1, "in", 1, 1, frame(1))


async def test_the_close_waits_for_a_held_producers_last_records(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A producer stopping (a connection's drain, then its ``disconnect`` marker) records
    after the cancellation: the close waits for it, up to ``grace``, and writes them."""
    writer = virtual_writer(journal_config(tmp_path), grace=5.0)

    async def producer(writer: JournalWriter, delay: float) -> None:
        with writer.held():
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(delay)  # stopping takes a while
                    if not writer.closed:
                        writer.record_frame(1, 1, "in", 1, 1, frame(1))
                        writer.record_marker(1, "disconnect", 2, 2, reason="gatherer stopping")

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        nursery.start_soon(producer, writer, 4.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    records = list(read_journal(writer.files_closed))
    assert [(r.kind, r.frame_no) for r in records if isinstance(r, JournalRecord)] == [
        ("frame", 1),
        ("disconnect", 1),
    ]
    assert writer.unwritten_records == 0

    # a producer slower than the grace: the close goes on without it
    late = virtual_writer(journal_config(tmp_path / "late"), grace=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(late.run)
        nursery.start_soon(producer, late, 6.0)
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        nursery.cancel_scope.cancel()
    assert trio.current_time() - started == 6.0  # the producer's own stop; the close at 5 s
    assert late.closed and late.records == 0 and late.unwritten_records == 0
