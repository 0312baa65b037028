"""Where no gatherer had a channel: production's ``gaps`` say so, per channel, as the
intersection of the gatherers' ``outage``/``reconnect`` stretches (a stretch one gatherer
covered is not a hole), so a reader tells missing from quiet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dedup_support import merge_once, write_all

from kalshi.dedup.coverage import CHANNEL_SID, channel_of, holes
from kalshi.models.rows import GapRow
from kalshi.store import connect_db
from kalshi.testing.recording import T0, make_truth, record

CONN = {"trade-0": 11, "ticker-0": 12, "lifecycle-0": 13, "orderbook-0": 10}


def _gap(gid: str, label: str, kind: str, start_ms: int, end_ms: int) -> GapRow:
    return GapRow(
        start_ts=T0 + start_ms * 1000,
        end_ts=T0 + end_ms * 1000,
        gatherer_id=gid,
        conn_id=CONN[label],  # a connection per label: one gap row each
        sid=None,
        ticker=None,
        kind=kind,
        expected_seq=None,
        got_seq=None,
        detail=f"{label}: gatherer down since its last frame",
    )


def test_a_channel_is_a_hole_only_where_every_gatherer_lacked_it() -> None:
    assert channel_of("lifecycle-0: gatherer down") == "market_lifecycle_v2"
    assert channel_of("combo-lifecycle-1: x") == "multivariate_market_lifecycle"
    assert channel_of("orderbook-0: x") is None
    uncovered = {
        "ga": {"ticker": [(10, 30), (50, 60)], "trade": [(0, 5)]},
        "gb": {"ticker": [(20, 55)], "market_lifecycle_v2": [(0, 100)]},
    }
    assert holes(uncovered, 100) == {"ticker": [(20, 30), (50, 55)]}
    assert holes(uncovered, 54) == {"ticker": [(20, 30)]}  # (50, 55) may still grow
    assert holes({"ga": {"ticker": [(1, 2)]}}, 100) == {"ticker": [(1, 2)]}


async def test_production_records_the_stretches_no_gatherer_covered(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(5, events=200)
    ga, gb = record(truth, "ga", latency_us=600), record(truth, "gb", conn_base=2, latency_us=2750)
    ga.gaps += [
        _gap("ga", "ticker-0", "outage", 20, 60),
        _gap("ga", "lifecycle-0", "outage", 20, 60),
        _gap("ga", "trade-0", "outage", 20, 60),
        _gap("ga", "orderbook-0", "outage", 20, 60),
    ]
    gb.gaps += [
        _gap("gb", "ticker-0", "reconnect", 40, 90),
        _gap("gb", "lifecycle-0", "outage", 10, 30),
        _gap("gb", "trade-0", "reconnect", 70, 80),  # after ga's: not a hole
    ]
    urls = await write_all(make_db, [ga, gb], tmp_path)
    offsets = {}
    for gid, url in urls.items():
        with connect_db(url) as db:
            offsets[gid] = db.query(
                "SELECT min(received_at - exchange_ts), max(received_at - exchange_ts)"
                " FROM orderbook_deltas"
            )[0]
    # received_at - exchange_ts: the latency, plus up to 3 ms for deltas stamped backwards
    assert offsets == {"ga": (600, 3602), "gb": (2750, 5752)}
    production = make_db()
    report = await merge_once(production, urls)
    assert report.holes == 2
    with connect_db(production) as db:
        rows = db.query(
            "SELECT start_ts - %s, end_ts - %s, gatherer_id, sid, kind, detail FROM gaps"
            " WHERE ticker IS NULL ORDER BY sid, start_ts",
            (T0, T0),
        )
    # ticker: ga lacked 20..60 ms, gb 40..90 ms (their receipts); each in exchange time,
    # widened by its clock's measured offset: start less the largest, end less the smallest.
    # lifecycle: ga 20..60, gb 10..30.
    assert rows == [
        (40_000 - 5752, 60_000 - 600, "dedup", CHANNEL_SID["ticker"], "merge_hole",
         "ticker: no gatherer connected (ga, gb)"),
        (20_000 - 3602, 30_000 - 2750, "dedup", CHANNEL_SID["market_lifecycle_v2"], "merge_hole",
         "market_lifecycle_v2: no gatherer connected (ga, gb)"),
    ]  # fmt: skip
    again = await merge_once(production, urls)
    assert again.holes == 0
