"""Rows the gatherer makes outside the WebSocket pipeline, read back from the journal:
REST trade pages (``kind: rest``) and its own gap rows (``gap`` markers holding the row);
journals written before them still read (docs/journal.md, "Line format")."""

from __future__ import annotations

from pathlib import Path

import orjson

from kalshi.journal import JournalRecord
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


_MARKET = orjson.loads(
    (Path(__file__).parent.parent / "data" / "rest" / "market.json").read_bytes()
)["market"]
_LISTED_US = 1_795_600_050_000_000
_OPENS_US = 1_795_600_060_000_000  # the initialized market's open_time: 10 s later


def _listing() -> bytes:
    """A journaled ``/markets`` page: one market finalized, one initialized (opens at
    :data:`_OPENS_US`), one active."""
    markets = [
        {**_MARKET, "ticker": "KXA-1", "status": "finalized"},
        {
            **_MARKET,
            "ticker": "KXB-1",
            "status": "initialized",
            "open_time": "2026-11-25T09:47:40Z",
        },
        {**_MARKET, "ticker": "KXC-1", "status": "active"},
    ]
    body = orjson.dumps({"markets": markets, "cursor": ""})
    detail = {"path": "/markets", "params": {"limit": 1000, "status": "open"}, "shard": "0/1"}
    return encode_rest("g1", _LISTED_US, 7, body, detail).rstrip(b"\n")


def _forget(wall_us: int, before_us: object) -> JournalRecord:
    line = encode_marker("g1", 0, 0, "forget", wall_us, 9, {"before_us": before_us})
    return decode_line(line.rstrip(b"\n"))


def test_the_replayed_registry_opens_and_forgets_as_live() -> None:
    """As live's registry (kalshi/gather: its 1 s timer and its complete listings): an
    initialized market becomes active at the first record at or after its open_time, by the
    records' wall_us (kalshi-api.md §5); a ``forget`` marker forgets the markets held as
    finalized since before its ``before_us``, their rows kept; a bad one is counted."""
    replayer = Replayer()
    listed = replayer.feed(decode_line(_listing()))
    assert [(t, r.ticker, r.status) for t, r in listed] == [
        ("markets", "KXA-1", "finalized"),
        ("markets", "KXB-1", "initialized"),
        ("markets", "KXC-1", "active"),
    ]
    registry = replayer.registries["g1"]
    assert registry.unopened == {"KXB-1": _OPENS_US}
    # finalized at the listing's time: not before it
    assert replayer.feed(_forget(_OPENS_US - 1, _LISTED_US)) == []
    assert set(registry.markets) == {"KXA-1", "KXB-1", "KXC-1"}
    assert replayer.feed(_forget(_OPENS_US - 1, _LISTED_US + 1)) == []
    assert set(registry.markets) == {"KXB-1", "KXC-1"}
    assert registry.status_counts() == {"initialized": 1, "active": 1}
    # the replayed time reaches the open_time: the record there opens it, before its own rows
    opened = replayer.feed(_forget(_OPENS_US, "soon"))
    assert [(t, r.ticker, r.status, r.updated_at) for t, r in opened] == [
        ("markets", "KXB-1", "active", _OPENS_US)
    ]
    assert opened[0][1].payload == listed[1][1].payload  # the last object received, as live
    assert registry.unopened == {}
    assert replayer.stats.frame_problems == {"invalid_record": 1}
    assert replayer.stats.rows == {"markets": 4}
    assert replayer.feed(_forget(_OPENS_US + 1, _OPENS_US)) == []
