"""Rows the gatherer makes outside the WebSocket pipeline, read back from the journal:
REST trade pages (``kind: rest``) and its own gap rows (``gap`` markers holding the row);
journals written before them still read (docs/journal.md, "Line format")."""

from __future__ import annotations

import orjson

from kalshi.journal.format import decode_line, encode_marker, encode_rest
from kalshi.models.rows import GapRow, TradeRow
from kalshi.replay import Replayer

_BODY = orjson.dumps(
    {
        "trades": [
            {
                "trade_id": trade_id,
                "ticker": ticker,
                "count_fp": "3.00",
                "yes_price_dollars": "0.4100",
                "no_price_dollars": "0.5900",
                "taker_side": "yes",
                "created_time": "2026-11-25T10:00:00.123Z",
            }
            for trade_id, ticker in (("t-1", "KXA-1"), ("t-2", "KXB-1"))
        ],
        "cursor": "",
    }
)
_PARAMS = {"limit": 1000, "min_ts": 1795600000, "max_ts": 1795600100}


def _rest(skipped: list[str], body: bytes = _BODY) -> bytes:
    line = encode_rest(
        "g1",
        1_795_600_050_000_000,
        7,
        body,
        {
            "path": "/markets/trades",
            "params": _PARAMS,
            "skipped": skipped,
        },
    )
    return line.rstrip(b"\n")


def test_a_rest_page_reads_back_byte_exact_and_makes_the_backfill_rows() -> None:
    record = decode_line(_rest(["t-2"]))
    assert (record.kind, record.direction, record.conn_id, record.raw) == ("rest", "in", 0, _BODY)
    assert record.detail == {"path": "/markets/trades", "params": _PARAMS, "skipped": ["t-2"]}
    rows = Replayer().feed(record)
    assert rows == [
        (
            "trades",
            TradeRow(
                exchange_ts=1_795_600_800_123_000,
                received_at=1_795_600_050_000_000,
                gatherer_id="g1",
                ticker="KXA-1",
                trade_id="t-1",
                price=41_000,
                size=300,
                taker_side=True,
                is_block_trade=False,
                source="rest",
                conn_id=0,
                frame_no=0,
                seq=None,
            ),
        )
    ]


def test_a_gap_marker_holding_its_row_makes_it_again_and_an_old_one_makes_none() -> None:
    gap = GapRow(
        start_ts=10,
        end_ts=20,
        gatherer_id="g1",
        conn_id=5,
        sid=None,
        ticker=None,
        kind="outage",
        expected_seq=None,
        got_seq=None,
        detail="trade-0: down",
    )
    new = encode_marker("g1", 5, 3, "gap", 20, 1, {"row": list(gap)}).rstrip(b"\n")
    old = encode_marker("g1", 5, 3, "gap", 20, 1, {"sid": 1, "expected": 4, "got": 6})
    replayer = Replayer()
    assert replayer.feed(decode_line(new)) == [("gaps", gap)]
    assert replayer.feed(decode_line(old.rstrip(b"\n"))) == []


def test_a_damaged_rest_body_is_counted_not_raised() -> None:
    replayer = Replayer()
    assert replayer.feed(decode_line(_rest([], b'{"trades": [{"trade_id": 1}]}'))) == []
    assert replayer.stats.frame_problems == {"invalid_record": 1}
