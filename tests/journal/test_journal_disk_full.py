"""A journal disk that fills up (a real tmpfs): the writer degrades, keeps every record
buffered, retries, and catches up by itself when space returns (issue 18 item 2)."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from journal_support import journal_config
from prometheus_client import REGISTRY

from kalshi.journal import JournalProblem, JournalRecord, JournalWriter, read_journal

FRAME = '{"type":"orderbook_delta","sid":2,"seq":%d,"msg":{"market_ticker":"M","id":"%s"}}'


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    point = tmp_path / "disk"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)], check=True)
    yield point
    subprocess.run(["umount", "--lazy", str(point)], check=True)


@pytest.mark.parametrize("compress", [False, True])
async def test_journal_disk_full_degrades_and_catches_up(small_disk: Path, compress: bool) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (56 << 10))  # leaves about 8 KiB
    cfg = journal_config(small_disk, compress=compress)
    writer = JournalWriter(cfg, "g-1", flush_interval=0.01)
    records = 150
    # ~40 KB either way (random ids: zstd cannot shrink them), five times what is left
    rng = random.Random(18)
    digits = 512 if compress else 32
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(1, records + 1):
                writer.record_frame(
                    7, n, "in", n, n, FRAME % (n, f"{rng.getrandbits(digits * 4):0{digits}x}")
                )
            while writer.disk_ok:
                await writer.flush_progress()
            assert REGISTRY.get_sample_value("kalshi_journal_disk_ok") == 0
            assert "No space left on device" in writer.disk_error
            assert writer.records_written < records  # still held, not dropped
            while writer.write_errors < 4:  # retried: each retry opened a new file
                await writer.flush_progress()
            await writer.on_disk()  # the database path does not wait for a refusing disk
            filler.unlink()  # space returns
            while not writer.disk_ok or writer.records_written < records:
                await writer.flush_progress()
            nursery.cancel_scope.cancel()
    assert writer.write_errors >= 1
    items = list(read_journal([small_disk / "journal"]))
    frames = [i.frame_no for i in items if isinstance(i, JournalRecord)]
    problems = [i for i in items if isinstance(i, JournalProblem)]
    # every record is there; lines of the refused flush written before the error may be
    # there twice (never lost), and the given-up file's tail reads as torn
    assert sorted(set(frames)) == list(range(1, records + 1))
    assert all("torn" in p.reason or "corrupt zstd" in p.reason for p in problems), problems
    # Tester F7: a new empty file was left for every retry while the disk refused
    files = sorted((small_disk / "journal").rglob("*.jsonl*"))
    assert [p.name for p in files if p.stat().st_size == 0] == []


async def test_a_stop_with_the_journal_disk_full_counts_what_it_could_not_write(
    small_disk: Path,
) -> None:
    # Tester F4: SIGTERM with the journal disk full ended the gatherer with exit 1 (the
    # final flush raised) and never said how many records it dropped.
    (small_disk / "filler").write_bytes(b"\0" * (64 << 10))  # the disk is full
    cfg = journal_config(small_disk, compress=False)
    writer = JournalWriter(cfg, "g-1", flush_interval=0.01, grace=1.0)
    rng = random.Random(4)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(1, 101):
                writer.record_frame(7, n, "in", n, n, FRAME % (n, f"{rng.getrandbits(128):032x}"))
            while writer.disk_ok:
                await writer.flush_progress()
            held = writer.buffered_bytes
            nursery.cancel_scope.cancel()  # the stop: no exception out of run()
    assert (writer.records_written, writer.unwritten_records) == (0, 100)
    assert writer.unwritten_bytes == held
    assert "No space left on device" in writer.unwritten_error
