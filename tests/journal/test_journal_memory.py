"""The journal's memory is bounded: during a disk stall the readers stop taking frames."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from kalshi.journal import JournalRecord, JournalWriter, read_journal
from kalshi.journal.format import encode_frame
from tests.journal.journal_support import journal_config, virtual_wall

FRAME = b'{"type":"orderbook_delta","msg":{"pad":"' + b"x" * 960 + b'"}}'
BOUND = 10_000
READERS = 3
FRAMES = 100  # per reader
LINE = len(encode_frame("g-1", READERS, FRAMES, "in", FRAMES, FRAMES, FRAME))  # the longest


async def test_a_disk_stall_stops_the_readers_at_the_bound(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    stalled = trio.Event()  # a write is stuck on the disk
    disk = trio.Event()  # set: the disk answers again

    async def stalling_disk(fn: Callable[..., Any], *args: Any) -> Any:
        if getattr(fn, "__name__", "") == "write_lines":
            stalled.set()
            await disk.wait()
        await trio.lowlevel.checkpoint()
        return fn(*args)

    writer = JournalWriter(
        journal_config(tmp_path),
        "g-1",
        virtual_wall,
        run_sync=stalling_disk,
        flush_bytes=4_000,
        max_buffer_bytes=BOUND,
    )
    taken = [0] * READERS

    async def reader(conn_id: int) -> None:
        for n in range(1, FRAMES + 1):
            await writer.room()  # what a connection does before reading its socket
            writer.record_frame(conn_id, n, "in", n, n, FRAME)
            taken[conn_id] += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            async with trio.open_nursery() as readers:
                for conn_id in range(READERS):
                    readers.start_soon(reader, conn_id)
                await stalled.wait()
                await trio.testing.wait_all_tasks_blocked()
                # every reader stopped: memory is at the bound plus one frame per reader
                assert writer.waiting == READERS and writer.pressure
                assert BOUND < writer.buffered_bytes <= BOUND + READERS * LINE
                assert sum(taken) < READERS * FRAMES
                disk.set()
            await writer.flush()
            nursery.cancel_scope.cancel()
    assert taken == [FRAMES] * READERS
    assert writer.peak_bytes <= BOUND + READERS * LINE
    assert writer.pauses >= READERS and writer.waiting == 0
    records = [r for r in read_journal([tmp_path / "journal"]) if isinstance(r, JournalRecord)]
    assert sorted((r.conn_id, r.frame_no) for r in records) == [
        (c, n) for c in range(READERS) for n in range(1, FRAMES + 1)
    ]
