"""``JournalWriter.on_disk``: the store's wait before a batch reaches the database, so a row
is never stored ahead of the frame it came from (a ``kill -9`` loses the journal's memory,
not its file)."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from journal_support import inline, journal_config, virtual_wall

from kalshi.journal import JournalRecord, JournalWriter, read_journal

FRAME = '{"type":"orderbook_delta","sid":2,"seq":%d,"msg":{"market_ticker":"M"}}'


def _lines(tmp_path: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (tmp_path / "journal").rglob("*.jsonl"))


async def test_on_disk_flushes_now_not_after_the_interval(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = JournalWriter(
        journal_config(tmp_path), "g-1", virtual_wall, run_sync=inline, flush_interval=60.0
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for n in range(1, 4):
            writer.record_frame(7, n, "in", n, n, FRAME % n)
        started = trio.current_time()
        await writer.on_disk()
        # asked for at once, not at the 60 s flush; every record appended before is in the file
        assert trio.current_time() == started
        assert (writer.records, writer.records_written, _lines(tmp_path)) == (3, 3, 3)
        await writer.on_disk()  # nothing new: returns without a flush
        assert writer.records_written == 3
        writer.record_frame(7, 4, "in", 4, 4, FRAME % 4)
        await writer.on_disk()
        assert _lines(tmp_path) == 4
        nursery.cancel_scope.cancel()
    assert [
        r.frame_no for r in read_journal([tmp_path / "journal"]) if isinstance(r, JournalRecord)
    ] == [1, 2, 3, 4]


async def test_on_disk_returns_once_the_writer_has_stopped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = JournalWriter(
        journal_config(tmp_path), "g-1", virtual_wall, run_sync=inline, flush_interval=60.0
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        nursery.cancel_scope.cancel()
    # the final flush wrote what was there; a late caller never waits for a flush to come
    with trio.fail_after(1):
        await writer.on_disk()
