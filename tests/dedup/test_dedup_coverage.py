"""Where no gatherer had a channel: production's ``gaps`` say so, per channel, as the
intersection of the gatherers' ``outage``/``reconnect`` stretches (a stretch one gatherer
covered is not a hole), so a reader tells missing from quiet. Each hole is one row: a
second pass, a gatherer's clock offset measured anew and a restarted deduplicator add
none (outside tester F2: one outage was 8 rows, the earliest before either gatherer
stopped)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dedup_support import dedup_config, merge_once, write_all

from kalshi.dedup.coverage import CHANNEL_SID, channel_of, holes
from kalshi.dedup.service import Deduplicator
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
        _gap("gb", "trade-0", "reconnect", 40, 50),  # starts with its ticker hole
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
    dedup = Deduplicator(dedup_config(production, urls))
    try:
        first = await dedup.run_pass(settle_us=0)
        second = await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    assert (first.holes, second.holes) == (3, 0)

    def stored() -> list[tuple[object, ...]]:
        with connect_db(production) as db:
            return db.query(
                "SELECT start_ts - %s, end_ts - %s, gatherer_id, conn_id, sid, kind, detail"
                " FROM gaps WHERE ticker IS NULL ORDER BY sid, start_ts",
                (T0, T0),
            )

    # Each gatherer's stretches (its receipts) in exchange time: less its clock's offset,
    # the smallest received_at - exchange_ts (ga 600, gb 2750), never the largest (a
    # backlog's delay moved the start before either gatherer stopped). trade: ga lacked
    # 20..60 ms, gb 40..50; ticker: ga 20..60, gb 40..90; lifecycle: ga 20..60, gb 10..30.
    # trade's and ticker's holes start in the same microsecond: both kept (sid in the key).
    expected = [
        (40_000 - 2750, 50_000 - 2750, "dedup", 0, CHANNEL_SID["trade"], "merge_hole",
         "trade: no gatherer connected (ga, gb)"),
        (40_000 - 2750, 60_000 - 600, "dedup", 0, CHANNEL_SID["ticker"], "merge_hole",
         "ticker: no gatherer connected (ga, gb)"),
        (20_000 - 600, 30_000 - 2750, "dedup", 0, CHANNEL_SID["market_lifecycle_v2"],
         "merge_hole", "market_lifecycle_v2: no gatherer connected (ga, gb)"),
    ]  # fmt: skip
    assert stored() == expected
    # gb's clock offset measured anew: 2000 µs now, so its stretches move 750 µs later.
    with connect_db(urls["gb"]) as db:
        db.execute(
            "UPDATE orderbook_deltas SET received_at = exchange_ts + 2000"
            " WHERE exchange_ts = (SELECT min(exchange_ts) FROM orderbook_deltas)"
        )
    restarted = await merge_once(production, urls)  # a new deduplicator: nothing in memory
    assert restarted.holes == 0
    assert stored() == expected
