"""Bytes each item that a burst holds in a gatherer's memory takes, measured with
``tracemalloc``: a row waiting in a writer's queue (per table, built by the real pipeline
from real frames), and a frame waiting in a whole-exchange socket's read-ahead (the
``(frame_no, wall_us, trio_time, raw)`` tuple the reader keeps). docs/scaling.md's memory
budget multiplies these by the configured bounds.

    python benchmarks/memory_parts.py [--results DIR]

Frames: the real order-book deltas, snapshots and trades of
tests/data/kalshi-gold15m (or $KALSHI_GOLD); ticker frames in kalshi-api.md §3.2's
shape (no real ticker capture is stored), one per market, 20 000 markets.
"""

from __future__ import annotations

import gc
import gzip
import pickle
import sys
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _common import GOLD, Results, arguments

from kalshi.pipeline import FrameProcessor


def gold_frames() -> list[bytes]:
    frames = []
    for path in sorted(GOLD.glob("events/*/*.ndjson.gz")):
        with gzip.open(path) as lines:
            for line in lines:
                frames.append(orjson.dumps(orjson.loads(line)["event"]))
    return frames


def ticker_frames(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        ts = 1_786_000_000 + i
        msg = {
            "market_id": f"9b0f6b43-5b68-4f9f-9f02-{i:012x}",
            "market_ticker": f"KXSERIES-26DEC01-T{i}",
            "price_dollars": "0.4800",
            "yes_bid_dollars": "0.4500",
            "yes_ask_dollars": "0.5300",
            "volume_fp": f"{33896 + i}.00",
            "open_interest_fp": "20422.00",
            "dollar_volume": 16948,
            "dollar_open_interest": 10211,
            "yes_bid_size_fp": "300.00",
            "yes_ask_size_fp": "150.00",
            "last_trade_size_fp": "25.00",
            "ts": ts,
            "ts_ms": ts * 1000 + i % 1000,
            "time": "2026-08-05T20:44:01.123456Z",
        }
        out.append(orjson.dumps({"type": "ticker", "sid": 2, "msg": msg}))
    return out


def held_bytes(make: Any) -> int:
    """Bytes allocated (and still held) by ``make()``'s result."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def main() -> None:
    parser = arguments(__doc__)
    args = parser.parse_args()
    frames = gold_frames() + ticker_frames(20_000)
    processor = FrameProcessor("m1")
    processor.process(1, 0, 0, b'{"type":"subscribed","id":1,"msg":{"channel":"ticker","sid":2}}')
    rows: dict[str, list[Any]] = defaultdict(list)
    by_kind: dict[str, list[bytes]] = defaultdict(list)
    for n, raw in enumerate(frames, 1):
        out = processor.process(1, n, 1_786_000_000_000_000 + n, raw)
        kind = out.message.type if out.message is not None else "other"
        by_kind[kind].append(raw)
        for table, row in out.rows:
            rows[table].append(row)
    results = []
    for table, kept in sorted(rows.items()):
        # a fresh copy of the rows (nothing shared with the registry or the books): an
        # upper bound on what a queued row holds
        blob = pickle.dumps(kept)
        per = held_bytes(lambda blob=blob: pickle.loads(blob)) / len(kept)
        results.append(["row in a writer's queue", table, len(kept), round(per, 1)])
    for kind, kept_frames in sorted(by_kind.items()):
        if kind not in ("orderbook_delta", "orderbook_snapshot", "trade", "ticker"):
            continue

        def read_ahead(chosen: list[bytes] = kept_frames) -> list[Any]:
            # the reader's tuple, each with its own bytes (as read off a socket)
            return [
                (n, 1_786_000_000_000_000 + n, n / 7, bytes(bytearray(f)))
                for n, f in enumerate(chosen)
            ]

        per = held_bytes(read_ahead) / len(kept_frames)
        mean = sum(map(len, kept_frames)) / len(kept_frames)
        results.append(["frame read ahead", kind, len(kept_frames), round(per, 1), round(mean, 1)])
    out = Results("memory-parts", {"ticker frames": 20_000, "gold frames": len(frames) - 20_000})
    out.table(
        "Bytes held per item (tracemalloc; rows: a fresh copy of each row)",
        ["item", "table or frame type", "items measured", "bytes each", "mean frame bytes"],
        [r + [None] * (5 - len(r)) for r in results],
    )
    out.write(args.results)


if __name__ == "__main__":
    main()
