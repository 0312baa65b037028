"""How often real books cross, and what the check costs: every frame of the real gold
capture (``../shared/data/kalshi-gold15m``, three markets, a day) through the pipeline;
counts crossed frames and times the pipeline with the check on (``crossed_book_frames``
2, the default) over the same frames. Writes ``benchmarks/results/crossed-books.json``.

    python benchmarks/crossed_books.py [CAPTURE_DIR] [--smoke] [--results DIR]
"""

from __future__ import annotations

import gzip
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _common import GOLD, Results, arguments

from kalshi.pipeline import FrameProcessor

CAPTURE = GOLD


def frames(capture: Path) -> list[tuple[int, int, bytes]]:
    """``(conn_id, recv_µs, frame)`` of every line, one connection per market file."""
    out = []
    for conn_id, path in enumerate(sorted(capture.glob("events/*/*.ndjson.gz")), 1):
        with gzip.open(path) as lines:
            for line in lines:
                record = orjson.loads(line)
                out.append((conn_id, record["recv_ms"] * 1000, orjson.dumps(record["event"])))
    return out


def run(items: list[tuple[int, int, bytes]]) -> FrameProcessor:
    processor = FrameProcessor("bench", crossed_book_frames=2)
    for conn_id in {c for c, _, _ in items}:
        processor.seq_rule(conn_id, filtered=True, implicit=True)  # a filtered capture
    for frame_no, (conn_id, wall, raw) in enumerate(items, 1):
        processor.process(conn_id, frame_no, wall, raw)
    return processor


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("capture", nargs="?", type=Path, default=CAPTURE)
    args = parser.parse_args()
    items = frames(args.capture)
    if args.smoke:
        items = items[:5_000]
    best = float("inf")
    for _ in range(1 if args.smoke else 3):
        start = time.perf_counter()
        processor = run(items)
        best = min(best, time.perf_counter() - start)
    counts = processor.counts
    results = Results(
        "crossed-books", {"capture": args.capture.name, "crossed_book_frames": 2, "best of": 3}
    )
    results.table(
        "Real capture through the pipeline with the crossed-book check on",
        ["frames", "deltas", "snapshots", "crossed-book frames", "book_invalid", "frames/s"],
        [[len(items), counts["orderbook_delta"], counts["orderbook_snapshot"],
          counts["crossed_book_frames"], counts["book_invalid"], len(items) / best]],
    )  # fmt: skip
    results.write(args.results)


if __name__ == "__main__":
    main()
