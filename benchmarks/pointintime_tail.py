"""What reading on past a point-in-time stop for gap markers costs (``docs/replay.md``,
"Gap markers past --at"): a zstd journal of the real gold capture's frames (every frame of
its three markets, ``REPEAT`` times over, a ``gap`` marker every 10 000 lines) read three
ways, best of 3: whole (every line decoded, as ``kalshi replay``), point-in-time at its
first frame (10 s decoded, then the rest scanned for gap markers: the cost the fix adds,
where before the read stopped), and only decompressed and split into lines (the floor).
Writes ``benchmarks/results/pointintime-tail.json``.

    python benchmarks/pointintime_tail.py [CAPTURE_DIR] [--smoke] [--results DIR]
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).parent))
from _common import GOLD, Results, arguments

from kalshi.journal import JournalRecord
from kalshi.journal.files import ZSTD_LEVEL
from kalshi.journal.format import encode_frame, encode_marker
from kalshi.journal.reader import split_lines
from kalshi.replay.source import SourceOptions, decompressed, read_records

CAPTURE = GOLD
REPEAT = 3
MARKER_EVERY = 10_000
FLUSH_LINES = 2_000  # one zstd frame per this many lines (the writer: one per flush)


def frames(capture: Path) -> list[tuple[int, bytes]]:
    """``(recv_µs, frame)`` of every line of the capture, in receive order."""
    out = []
    for path in sorted(capture.glob("events/*/*.ndjson.gz")):
        with gzip.open(path) as lines:
            for line in lines:
                record = orjson.loads(line)
                out.append((record["recv_ms"] * 1000, orjson.dumps(record["event"])))
    return sorted(out, key=lambda f: f[0])


def write(path: Path, items: list[tuple[int, bytes]], repeat: int) -> tuple[int, int, int]:
    """The journal file; ``(lines, uncompressed bytes, gap markers)``."""
    span = items[-1][0] - items[0][0] + 1
    lines = size = markers = 0
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    with path.open("wb") as fh:
        buffer: list[bytes] = []
        for n in range(repeat):
            for wall, raw in items:
                wall += n * span
                lines += 1
                buffer.append(encode_frame("bench", 1, lines, "in", wall, wall, raw))
                if lines % MARKER_EVERY == 0:
                    row = [wall, wall + 1, "bench", 1, None, None, "reconnect", None, None, "x"]
                    buffer.append(encode_marker("bench", 1, lines, "gap", wall, wall, {"row": row}))
                    lines += 1
                    markers += 1
                if len(buffer) >= FLUSH_LINES:
                    data = b"".join(buffer)
                    size += len(data)
                    fh.write(compressor.compress(data))
                    buffer.clear()
        data = b"".join(buffer)
        size += len(data)
        fh.write(compressor.compress(data))
    return lines, size, markers


def best(fn: Callable[[], int], runs: int) -> tuple[float, int]:
    times, out = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("capture", nargs="?", type=Path, default=CAPTURE)
    args = parser.parse_args()
    items = frames(args.capture)
    repeat = REPEAT
    if args.smoke:
        items, repeat = items[:20_000], 1
    runs = 1 if args.smoke else 3
    with tempfile.TemporaryDirectory(prefix="kalshi-bench-tail-") as tmp:
        path = Path(tmp) / "bench-20260805T000000-1.jsonl.zst"
        lines, size, markers = write(path, items, repeat)
        at = items[0][0]

        def whole() -> int:
            return sum(1 for _ in read_records([path]))

        def past_stop() -> int:
            read = read_records([path], SourceOptions(until_us=at))
            late = [i for i in read if isinstance(i, JournalRecord) and i.wall_us > at + 10**7]
            assert len(late) == sum(1 for i in late if i.kind == "gap")
            return len(late)

        def floor() -> int:
            with path.open("rb") as fh:
                return sum(1 for _ in split_lines(decompressed(fh, [])))

        rows = []
        for name, fn in (
            ("whole: every line decoded", whole),
            ("point-in-time at the first frame: gap markers past the stop", past_stop),
            ("decompressed and split only", floor),
        ):
            seconds, out = best(fn, runs)
            rows.append([name, out, seconds, lines / seconds, size / seconds / 2**20])
    assert rows[1][1] == markers - sum(1 for w, _ in items if w <= at + 10**7) // MARKER_EVERY
    results = Results(
        "pointintime-tail",
        {"capture": args.capture.name, "repeat": repeat, "lines": lines,
         "MiB (uncompressed)": size / 2**20, "gap markers": markers, "best of": runs},
    )  # fmt: skip
    results.table(
        "Reading a zstd journal to its end: whole, and past a point-in-time stop",
        ["read", "records out", "s", "lines/s", "MiB/s (uncompressed)"],
        rows,
        note="records out: the point-in-time read's records past its stop (all gap markers)",
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
