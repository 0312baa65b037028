"""Lifecycle events through the real pipeline and the merge: most carry no exchange time
(kalshi-api.md §3.5: only ``determined`` and ``settled`` do), so a row's ``exchange_ts`` is
its gatherer's receipt; two gatherers' copies of one event must still be one row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from dedup_support import merge_once, write_all

from kalshi.store import connect_db
from kalshi.testing.recording import Event, make_truth, record

MARKET = "KXTEST-00"
EVENT = "KXTEST"
MESSAGES = [  # (type, msg): an event created, a market created, paused, resumed, settled
    (
        "event_lifecycle",
        {
            "event_ticker": EVENT,
            "exchange_index": 0,
            "title": "Test",
            "subtitle": "test",
            "collateral_return_type": "MECNET",
            "series_ticker": "KX",
        },
    ),
    (
        "market_lifecycle_v2",
        {
            "market_ticker": MARKET,
            "event_type": "created",
            "open_ts": 1_767_225_600,
            "close_ts": 1_767_229_200,
            "price_level_structure": "linear_cent",
        },
    ),
    (
        "market_lifecycle_v2",
        {"market_ticker": MARKET, "event_type": "deactivated", "is_deactivated": True},
    ),
    (
        "market_lifecycle_v2",
        {"market_ticker": MARKET, "event_type": "activated", "is_deactivated": False},
    ),
    (
        "market_lifecycle_v2",
        {
            "market_ticker": MARKET,
            "event_type": "determined",
            "determination_ts": 1_767_225_700,
            "result": "yes",
            "settlement_value": "1.0000",
        },
    ),
    (
        "market_lifecycle_v2",
        {"market_ticker": MARKET, "event_type": "settled", "settled_ts": 1_767_225_800},
    ),
]


async def test_two_gatherers_copies_of_an_event_without_a_time_are_one_row(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(5, events=60)
    at = [truth.events[10 * i].exchange_ts for i in range(len(MESSAGES))]
    for n, ((kind, msg), ts) in reversed(list(enumerate(zip(MESSAGES, at, strict=True)))):
        event = Event(1000 + n, ts, MARKET, "lifecycle", message=(kind, orjson.dumps(msg)))
        truth.events.insert(10 * n, event)
    # Two gatherers, 600 and 2 750 µs behind the exchange: every receipt differs.
    recs = [record(truth, "ga", latency_us=600), record(truth, "gb", conn_base=2, latency_us=2750)]
    assert [len(r.market_lifecycle) for r in recs] == [6, 6]
    urls = await write_all(make_db, recs, tmp_path)
    production = make_db()
    report = await merge_once(production, urls)
    assert (report.merged["market_lifecycle"], report.duplicates["market_lifecycle"]) == (6, 6)
    with connect_db(production) as db:
        rows = db.query(
            "SELECT ticker, event_type, exchange_ts, gatherer_id FROM market_lifecycle"
            " ORDER BY received_at"
        )
    ga = [r.received_at for r in recs[0].market_lifecycle]  # the first gatherer's copies
    assert [r.received_at - r.exchange_ts for r in recs[0].market_lifecycle[:4]] == [0] * 4
    gb = [r.received_at for r in recs[1].market_lifecycle]
    assert [b - a > 2000 for a, b in zip(ga, gb, strict=True)] == [True] * 6
    assert rows == [
        (EVENT, "event_created", ga[0], "ga"),
        (MARKET, "created", ga[1], "ga"),
        (MARKET, "deactivated", ga[2], "ga"),
        (MARKET, "activated", ga[3], "ga"),
        (MARKET, "determined", 1_767_225_700_000_000, "ga"),  # the exchange's times
        (MARKET, "settled", 1_767_225_800_000_000, "ga"),
    ]
