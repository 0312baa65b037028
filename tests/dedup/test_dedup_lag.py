"""``kalshi_dedup_lag_seconds{gatherer,table}`` (and ``/health``'s ``lag_seconds``) means one
thing for every table: the receipt of the newest row the gatherer committed to the table
minus the receipt of the newest of those rows the merge has read, in the gatherer's clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
from dedup_support import MISSES, dedup_config, recordings, watermark_at_middle, write_all
from prometheus_client import REGISTRY

from kalshi.dedup.service import Deduplicator
from kalshi.models.rows import TABLE_COLUMNS
from kalshi.store import connect_db
from kalshi.testing.recording import make_truth


def _gauge(gatherer: str, table: str) -> float | None:
    labels = {"gatherer": gatherer, "table": table}
    return REGISTRY.get_sample_value("kalshi_dedup_lag_seconds", labels)


async def test_the_lag_is_the_newest_committed_row_less_the_newest_read(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(7, events=200)
    recs = recordings(truth, {"ga": MISSES["g0"], "gb": MISSES["g1"]})
    urls = await write_all(make_db, recs, tmp_path)
    cuts = watermark_at_middle(urls)  # the books are merged up to the middle only
    newest = {}
    for gid, url in urls.items():
        with connect_db(url) as db:
            newest[gid] = db.query(
                "SELECT greatest((SELECT max(received_at) FROM orderbook_deltas),"
                " (SELECT max(snapshot_ts) FROM orderbook_snapshots WHERE source = 'ws'))"
            )[0][0]
    production = make_db()
    dedup = Deduplicator(dedup_config(production, urls))
    holder = psycopg.connect(urls["ga"], autocommit=True)
    try:
        await dedup.run_pass(settle_us=0)
        lag = dedup.health()["lag_seconds"]
        with connect_db(production) as db:
            horizons = dict(
                db.query(
                    "SELECT gatherer_id, horizon FROM dedup_cursors"
                    " WHERE table_name = 'orderbook_deltas'"
                )
            )
        for gid in urls:  # the books are read by receipt up to the cursor's horizon
            assert horizons[gid] < cuts[gid]  # not through the watermark
            book = (newest[gid] - horizons[gid]) / 1_000_000
            assert lag[f"{gid}/orderbook_deltas"] == round(book, 3) > 0
            assert _gauge(gid, "orderbook_deltas") == book
            for table in ("trades", "tickers", "market_lifecycle", "markets"):
                assert (lag[f"{gid}/{table}"], _gauge(gid, table)) == (0, 0)
        # A transaction open on ga's server holds its commit horizon back: a trade
        # committed after it is not read yet, so the trades lag by its receipt less that
        # of the newest trade read (the one it copies, 2.5 s earlier).
        holder.execute("BEGIN")
        holder.execute("SELECT pg_current_xact_id()")
        columns = ", ".join(TABLE_COLUMNS["trades"])
        values = columns.replace("received_at", "received_at + 2500000").replace(
            "trade_id", "trade_id || '-late'"
        )
        with connect_db(urls["ga"]) as db:
            db.execute(
                f"INSERT INTO trades ({columns}) SELECT {values} FROM trades"
                " ORDER BY received_at DESC LIMIT 1"
            )
        await dedup.run_pass(settle_us=0)
        assert _gauge("ga", "trades") == 2.5
        assert dedup.health()["lag_seconds"]["ga/trades"] == 2.5
        assert _gauge("gb", "trades") == 0
        holder.execute("COMMIT")
        report = await dedup.run_pass(settle_us=0)
        assert report.merged["trades"] == 1
        assert _gauge("ga", "trades") == 0
    finally:
        holder.close()
        dedup.close()
