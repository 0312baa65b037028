"""Two rows of one connection with the same identity are two exchange messages (a
connection receives each message once): production keeps, per identity, as many rows as the
most any single connection holds (``occurrence``, docs/dedup.md). Through the real pipeline
(:mod:`kalshi.testing.recording`) and the merge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from dedup_support import merge_once, write_all

from kalshi.store import connect_db
from kalshi.testing.recording import Event, Recording, Truth, make_truth, record

MARKET = "KXTEST-00"


def _aba(truth: Truth) -> int:
    """Put a ticker triple A, B, A into ``truth`` at one exchange time (the top of book
    moved and moved back within one ms; kalshi-api.md §3.2: no seq); returns that time."""
    at = truth.events[100].exchange_ts // 1000 * 1000  # tickers carry ms (ts_ms)
    where = next(i for i, e in enumerate(truth.events) if e.exchange_ts > at)
    a = Event(9000, at, MARKET, "ticker", price=37_000)
    b = Event(9001, at, MARKET, "ticker", price=38_000)
    truth.events[where:where] = [a, b, a]
    return at


def _tickers_at(url: str, at: int) -> list[tuple[object, ...]]:
    with connect_db(url) as db:
        return db.query(
            "SELECT yes_bid, yes_ask, volume, occurrence, gatherer_id FROM tickers"
            " WHERE exchange_ts = %s ORDER BY occurrence, yes_bid",
            (at,),
        )


async def test_one_gatherer_a_b_a_tickers_in_one_ms_are_three_rows(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(7, markets=1, events=200)
    at = _aba(truth)
    rec = record(truth, "ga")
    assert [(r.yes_bid, r.conn_id) for r in rec.tickers if r.exchange_ts == at] == [
        (37_000, 1_000_012),
        (38_000, 1_000_012),
        (37_000, 1_000_012),
    ]
    urls = await write_all(make_db, [rec], tmp_path)
    production = make_db()
    report = await merge_once(production, urls)
    assert report.merged["tickers"] == len(rec.tickers)
    assert _tickers_at(production, at) == [
        (37_000, 38_000, 900_000, 1, "ga"),
        (38_000, 39_000, 900_100, 1, "ga"),
        (37_000, 38_000, 900_000, 2, "ga"),
    ]
    with connect_db(production) as db:
        assert db.query("SELECT count(*) FROM tickers") == [(len(rec.tickers),)]
    # a second pass finds every bucket equal by digest and adds nothing
    again = await merge_once(production, urls)
    assert again.merged["tickers"] == 0


async def test_two_gatherers_each_with_the_a_b_a_triple_give_three_rows(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(7, markets=1, events=200)
    at = _aba(truth)
    recs = [record(truth, "ga", latency_us=600), record(truth, "gb", conn_base=2, latency_us=900)]
    urls = await write_all(make_db, recs, tmp_path)
    production = make_db()
    report = await merge_once(production, urls)
    n = len(recs[0].tickers)
    assert (report.merged["tickers"], report.duplicates["tickers"]) == (n, n)
    assert _tickers_at(production, at) == [
        (37_000, 38_000, 900_000, 1, "ga"),
        (38_000, 39_000, 900_100, 1, "ga"),
        (37_000, 38_000, 900_000, 2, "ga"),
    ]


PAUSE = {"market_ticker": MARKET, "event_type": "deactivated", "is_deactivated": True}
RESUME = {"market_ticker": MARKET, "event_type": "activated", "is_deactivated": False}


def _lifecycle(truth: Truth, messages: list[dict[str, object]]) -> None:
    for n, msg in reversed(list(enumerate(messages))):
        ts = truth.events[10 * n].exchange_ts
        body = ("market_lifecycle_v2", orjson.dumps(msg))
        truth.events.insert(10 * n, Event(1000 + n, ts, MARKET, "lifecycle", message=body))


def _lifecycle_rows(url: str) -> list[tuple[object, ...]]:
    with connect_db(url) as db:
        return db.query(
            "SELECT event_type, occurrence, conn_id FROM market_lifecycle ORDER BY received_at"
        )


async def test_a_gatherers_two_lifecycle_connections_give_one_row_per_event(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(5, events=60)
    _lifecycle(truth, [PAUSE, RESUME])
    rec = record(truth, "ga", latency_us=600)
    # its second lifecycle connection (websocket.lifecycle_connections: 2): the rows the
    # pipeline made of that connection's frames, in the same gatherer's table
    second = record(truth, "ga", conn_base=3, latency_us=800).market_lifecycle
    rec.market_lifecycle += second
    assert sorted({r.conn_id for r in rec.market_lifecycle}) == [1_000_013, 3_000_013]
    urls = await write_all(make_db, [rec], tmp_path)
    production = make_db()
    report = await merge_once(production, urls)
    assert (report.merged["market_lifecycle"], report.duplicates["market_lifecycle"]) == (2, 2)
    assert _lifecycle_rows(production) == [
        ("deactivated", 1, 1_000_013),
        ("activated", 1, 1_000_013),
    ]


async def test_a_repeated_identical_pause_on_one_connection_is_two_rows(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(5, events=60)
    _lifecycle(truth, [PAUSE, RESUME, PAUSE])
    recs: list[Recording] = [record(truth, "ga"), record(truth, "gb", conn_base=2)]
    urls = await write_all(make_db, recs, tmp_path)
    production = make_db()
    report = await merge_once(production, urls)
    # gb received at the same times: its buckets' digests (occurrences counted) equal
    # production's once ga's rows are in, so none of its rows is read
    assert (report.merged["market_lifecycle"], report.duplicates["market_lifecycle"]) == (3, 0)
    assert _lifecycle_rows(production) == [
        ("deactivated", 1, 1_000_013),
        ("activated", 1, 1_000_013),
        ("deactivated", 2, 1_000_013),
    ]
