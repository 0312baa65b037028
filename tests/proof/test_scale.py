"""The scale run in miniature as part of `just test` (issue 20): 20 000 markets, the seed's
layout (150 connections per gatherer), two gatherers each with its own PostgreSQL, the
deduplicator and a Parquet export, 2 minutes with bursts and market churn, no fault. Same
checks as `just scale`: nothing lost, nothing doubled, every book equal, no reconnect."""

from __future__ import annotations

from pathlib import Path

from benchmarks.fullscale import run_scale


async def test_twenty_thousand_markets_for_two_minutes(tmp_path: Path) -> None:
    doc = await run_scale(
        tmp_path / "scale",
        minutes=2.0,
        markets=20_000,
        active=2_000,
        rate=300.0,
        burst_every=50.0,  # of running time: bursts at 50 and 100 s of the 120
        # not pinned: the gatherers are processes on the wall clock, so the universe must be
        # dated now for their view of open and close times to match the exchange's
        startup_limit=240.0,
        say=lambda line: None,
    )
    assert doc["failures"] == [], doc
    live = doc["markets_live_at_exchange"]
    assert live > 16_000  # initialized + active of the 20 000 (the rest closed or settled)
    assert doc["markets_subscribed"] == {"g1": live, "g2": live}
    assert doc["reconnects"] == {"g1": 0, "g2": 0}
    assert doc["reconnects_during_startup"] == {"g1": 0, "g2": 0}
    assert doc["trades_generated"] > 1_000
    assert (doc["trades_lost"], doc["trades_duplicated"], doc["trades_invented"]) == (0, 0, 0)
    assert (doc["books_checked"], doc["books_unequal"]) == (2_000, 0)
    assert doc["bursts"] == 2
    assert doc["rows"]["prod"]["trades"] == doc["trades_generated"]
    assert doc["bytes"]["parquet"] > 0
    # The start-up's rows (16 320 snapshots, 20 000 markets a gatherer) are more than
    # spool.memory_rows (20 000, all tables together): some go through the spool's disk, as
    # designed; the exact counts above say every one was written once.
    assert set(doc["max_spool_rows"]) == {"g1", "g2"}
