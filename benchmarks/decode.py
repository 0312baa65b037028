"""Decode throughput: messages/s of ``decode_ws`` per message type, next to a bare
``orjson.loads`` of the same frames (the reference in the same run).

    python benchmarks/decode.py [--smoke] [--results DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, add_common, rate

from kalshi.wire import decode_ws

SNAPSHOT_LEVELS = 40


def frames() -> dict[str, list[bytes]]:
    delta = (
        '{"type":"orderbook_delta","sid":2,"seq":%d,"msg":{"market_ticker":"KXHIGHNY-26NOV25-B81.5",'
        '"market_id":"9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1","price_dollars":"0.%04d",'
        '"delta_fp":"-%d.00","side":"yes","ts":"2026-11-24T20:44:01Z","ts_ms":1795553041000}}'
    )
    trade = (
        '{"type":"trade","sid":3,"seq":%d,"msg":{"trade_id":"879217f6-553e-7222-2304-fb05558d%04d",'
        '"market_ticker":"KXHIGHNY-26NOV25-B81.5","yes_price_dollars":"0.%04d",'
        '"no_price_dollars":"0.2000","count_fp":"2.00","taker_side":"no",'
        '"taker_outcome_side":"no","taker_book_side":"ask","is_block_trade":false,'
        '"ts":1795553041,"ts_ms":1795553041391}}'
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
        "orderbook_delta": [(delta % (i, i % 9999 + 1, i % 50 + 1)).encode() for i in range(1000)],
        "trade": [(trade % (i, i, i % 9999 + 1)).encode() for i in range(1000)],
        "ticker": [(ticker % (i % 9999 + 1)).encode() for i in range(1000)],
        "orderbook_snapshot": [(snapshot % i).encode() for i in range(100)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(parser)
    args = parser.parse_args()
    seconds = 0.05 if args.smoke else 1.0
    results = Results("decode", {"seconds per measurement": seconds, "best of": 3})
    rows = []
    for kind, batch in frames().items():

        def decode(batch: list[bytes] = batch) -> int:
            for raw in batch:
                decode_ws(raw)
            return len(batch)

        def bare(batch: list[bytes] = batch) -> int:
            for raw in batch:
                orjson.loads(raw)
            return len(batch)

        ours, ref = rate(decode, min_seconds=seconds), rate(bare, min_seconds=seconds)
        label = kind + (f" ({SNAPSHOT_LEVELS}x2 levels)" if kind == "orderbook_snapshot" else "")
        rows.append([label, ours, ref, ours / ref])
    results.table(
        "decode_ws next to a bare orjson.loads of the same frames (msgs/s)",
        ["message", "decode_ws", "bare orjson.loads", "ratio"],
        rows,
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
