"""Decode throughput: messages/s of ``decode_ws`` per message shape, next to a bare
``orjson.loads`` of the same frames (the reference in the same run).

Two sources of frames:

* **the real capture** ``tests/data/kalshi-gold15m`` (a copy of the third-party sample,
  103,484 frames), read with the project's own capture reader (``read_records``,
  ``docs/replay.md`` "Captures"), grouped by shape: an ``orderbook_delta`` whose ``ts``
  has a 6-digit fraction (most of them), one whose trailing zeros are trimmed (1 to 5
  digits), a ``trade``, an ``orderbook_snapshot`` as the exchange sent it;
* **synthetic frames** for what the capture lacks: a ``ticker``, a delta whose ``ts``
  has no fraction (``"…01Z"``) and a 40x2-level snapshot.

    python benchmarks/decode.py [--smoke] [--results DIR]
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _common import GOLD, Results, arguments, rate

from kalshi.replay.source import read_records
from kalshi.wire import decode_ws

SNAPSHOT_LEVELS = 40
CAPTURE = GOLD / "events"
# The capture's shapes in the table's order (one it lacks gets no row).
CAPTURE_SHAPES = (
    "orderbook_delta, ts .ffffff",
    "orderbook_delta, ts trimmed to 1-5 digits",
    "orderbook_delta, ts whole seconds",
    "trade",
    "orderbook_snapshot",
)
SMOKE_FRAMES = 2000  # per shape, in --smoke

_TYPE = re.compile(rb'"type":"(\w+)"')
_TS_FRACTION = re.compile(rb'"ts":"[^"]*?(?:\.(\d+))?Z"')


def delta_shape(raw: bytes) -> str:
    """The shape of an ``orderbook_delta``'s ``ts`` (kalshi-api.md, "orderbook_delta")."""
    found = _TS_FRACTION.search(raw)
    if found is None:
        return "orderbook_delta, ts not RFC 3339"
    digits = len(found.group(1) or b"")
    if digits == 6:
        return "orderbook_delta, ts .ffffff"
    if digits == 0:
        return "orderbook_delta, ts whole seconds"
    return "orderbook_delta, ts trimmed to 1-5 digits"


def capture_frames(path: Path = CAPTURE) -> dict[str, list[bytes]]:
    """The capture's received frames by shape (first seen first), exactly as received."""
    shapes: dict[str, list[bytes]] = defaultdict(list)
    for record in read_records([path]):
        raw = getattr(record, "raw", None)
        if not raw or getattr(record, "direction", None) != "in":
            continue  # problems and markers (sessions), not frames
        kind = _TYPE.search(raw)
        name = kind.group(1).decode() if kind else "other"
        shapes[delta_shape(raw) if name == "orderbook_delta" else name].append(raw)
    known = [s for s in CAPTURE_SHAPES if s in shapes]
    return {s: shapes[s] for s in known + sorted(set(shapes) - set(known))}


def synthetic_frames() -> dict[str, list[bytes]]:
    """Frames made here for the shapes the capture lacks."""
    delta = (
        '{"type":"orderbook_delta","sid":2,"seq":%d,"msg":{"market_ticker":"KXHIGHNY-26NOV25-B81.5",'
        '"market_id":"9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1","price_dollars":"0.%04d",'
        '"delta_fp":"-%d.00","side":"yes","ts":"2026-11-24T20:44:01Z","ts_ms":1795553041000}}'
    )
    ticker = (
        '{"type":"ticker","sid":11,"msg":{"market_id":"9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",'
        '"market_ticker":"KXHIGHNY-26NOV25-B81.5","price_dollars":"0.%04d",'
        '"yes_bid_dollars":"0.4500","yes_ask_dollars":"0.5300","volume_fp":"33896.00",'
        '"open_interest_fp":"20422.00","dollar_volume":16948,"dollar_open_interest":10211,'
        '"yes_bid_size_fp":"300.00","yes_ask_size_fp":"150.00","last_trade_size_fp":"25.00",'
        '"ts":1795553041,"ts_ms":1795553041000,"time":"2026-11-24T20:44:01Z"}}'
    )
    levels = ",".join(f'["0.{p:02d}00","{p * 3}.00"]' for p in range(1, SNAPSHOT_LEVELS + 1))
    snapshot = (
        '{"type":"orderbook_snapshot","sid":2,"seq":%d,"msg":{"market_ticker":"KXHIGHNY-26NOV25-B81.5",'
        '"market_id":"9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1","yes_dollars_fp":[' + levels + "],"
        '"no_dollars_fp":[' + levels + "]}}"
    )
    return {
        "orderbook_delta, ts whole seconds": [
            (delta % (i, i % 9999 + 1, i % 50 + 1)).encode() for i in range(1000)
        ],
        "ticker": [(ticker % (i % 9999 + 1)).encode() for i in range(1000)],
        f"orderbook_snapshot ({SNAPSHOT_LEVELS}x2 levels)": [
            (snapshot % i).encode() for i in range(100)
        ],
    }


def measure(batch: list[bytes], seconds: float) -> tuple[float, float]:
    """(decode_ws msgs/s, bare orjson.loads msgs/s) over the whole batch, best of 3."""

    def decode() -> int:
        for raw in batch:
            decode_ws(raw)
        return len(batch)

    def bare() -> int:
        for raw in batch:
            orjson.loads(raw)
        return len(batch)

    return rate(decode, min_seconds=seconds), rate(bare, min_seconds=seconds)


def main() -> None:
    parser = arguments(__doc__)
    args = parser.parse_args()
    seconds = 0.05 if args.smoke else 1.0
    results = Results(
        "decode",
        {"seconds per measurement": seconds, "best of": 3, "capture": "tests/data/kalshi-gold15m"},
    )
    sources = [("capture", capture_frames()), ("synthetic", synthetic_frames())]
    rows = []
    for source, shapes in sources:
        for shape, frames in shapes.items():
            batch = frames[:SMOKE_FRAMES] if args.smoke else frames
            ours, ref = measure(batch, seconds)
            rows.append([f"{shape} ({source})", len(batch), ours, ref, ours / ref])
    results.table(
        "decode_ws next to a bare orjson.loads of the same frames (msgs/s)",
        ["message (frames from)", "frames", "decode_ws", "bare orjson.loads", "ratio"],
        rows,
        note="capture: the frames of tests/data/kalshi-gold15m exactly as received, by shape "
        "(a delta's ts with a 6-digit fraction, or trailing zeros trimmed); synthetic: made "
        "for what the capture lacks. Each rate is over all the frames of its row, in "
        "capture order, best of 3.",
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
