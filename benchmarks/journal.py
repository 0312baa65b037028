"""Journal append rate: records/s and MB/s through ``JournalWriter`` (plain and zstd) for
realistic ~200-byte ``orderbook_delta`` frames, and the cost of one ``record_frame`` call on
the event loop (the only part the gatherer's receive loop pays).

    python benchmarks/journal.py [--records N]

End-to-end rate = records recorded on the event loop, flushed by the writer's thread, and
closed on disk (time from the first call to the file being closed). Compare with the
gatherer's receive rate (all of Kalshi is a few thousand frames/s at peak).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio
import trio.lowlevel

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments

from kalshi.config import ByteSize, JournalConfig
from kalshi.journal import JournalWriter

FRAME = (
    '{"type":"orderbook_delta","sid":%d,"seq":%d,"msg":{"market_ticker":"KXHIGHNY-25NOV24-B5%d",'
    '"market_id":"9b0f6b43-5b68-4f3e-9bd5-7f2a7e2b%04d","price_dollars":"0.%04d",'
    '"delta_fp":"-%d.00","side":"yes","ts":"2026-11-24T22:59:00.123456Z"}}'
)


def frames(count: int) -> list[str]:
    return [FRAME % (n % 7, n, n % 10, n % 10000, n % 10000, n % 500 + 1) for n in range(count)]


async def measure(root: Path, compress: bool, raw: list[str]) -> tuple[float, float, float, int]:
    cfg = JournalConfig(dir=str(root), compress=compress, rotate_bytes=ByteSize(256 << 20))
    writer = JournalWriter(cfg, "bench-1")
    call_seconds = 0.0
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        step = 2000
        for base in range(0, len(raw), step):
            t0 = time.perf_counter()
            for n in range(base, min(base + step, len(raw))):
                writer.record_frame(1, n + 1, "in", 1_795_561_140_000_000 + n, n, raw[n])
            call_seconds += time.perf_counter() - t0
            await trio.lowlevel.checkpoint()  # let the flush task run, as a receive loop does
        nursery.cancel_scope.cancel()
    total = time.perf_counter() - start
    on_disk = sum(p.stat().st_size for p in writer.files_closed)
    return total, call_seconds, writer.bytes_written / total, on_disk


def call_cost(root: Path, raw: list[str]) -> float:
    """Seconds per ``record_frame`` with no flush thread competing for the GIL."""
    writer = JournalWriter(JournalConfig(dir=str(root)), "bench-1", max_buffer_bytes=1 << 40)
    start = time.perf_counter()
    for n, text in enumerate(raw):
        writer.record_frame(1, n + 1, "in", 1_795_561_140_000_000 + n, n, text)
    return (time.perf_counter() - start) / len(raw)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--records", type=int, default=500_000)
    args = parser.parse_args()
    if args.smoke:
        args.records = 5_000
    raw = frames(args.records)
    avg = sum(map(len, raw)) / len(raw)
    results = Results(
        "journal", {"orderbook_delta frames": args.records, "bytes per frame": round(avg)}
    )
    rows: list[list[object]] = []
    tmp = Path(tempfile.mkdtemp(prefix="kalshi-journal-bench-"))
    try:
        alone = call_cost(tmp / "alone", raw)
        for compress in (False, True):
            total, calls, mbps, on_disk = trio.run(measure, tmp / str(compress), compress, raw)
            rows.append(
                ["zstd" if compress else "plain", args.records / total, mbps / 1e6,
                 on_disk / 1e6, calls / args.records * 1e6]
            )  # fmt: skip
        results.table(
            "Journal end to end (record_frame on the event loop, flushes in a thread)",
            ["mode", "records/s", "MB/s of lines", "MB on disk", "record_frame µs"],
            rows,
            note=f"record_frame alone, never flushed: {alone * 1e6:.2f} µs a call.",
        )  # fmt: skip
        results.write(args.results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
