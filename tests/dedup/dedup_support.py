"""Helpers shared by the dedup tests: writing recordings (rows the real pipeline made of a
scripted exchange's frames, :mod:`kalshi.testing.recording`) into gatherer databases with
the real store, a dedup config, and the checks of production against the truth."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from kalshi.config import (
    DedupConfig,
    GathererConfig,
    GathererSource,
    HttpConfig,
    MetricsConfig,
    ProductionConfig,
    SpoolConfig,
    SyncConfig,
)
from kalshi.dedup import production_books
from kalshi.dedup.merge import HOLE_KIND
from kalshi.dedup.service import Deduplicator, PassReport
from kalshi.store import connect_db, open_store
from kalshi.testing import recording
from kalshi.testing.recording import Recording, Truth, record


async def write_recording(url: str, rec: Recording, spool: Path) -> None:
    """Write ``rec`` into the gatherer database at ``url`` with :func:`open_store`."""
    cfg = GathererConfig(
        gatherer_id=rec.gatherer_id,
        spool=SpoolConfig(dir=str(spool / "spool"), dead_letter_dir=str(spool / "dead")),
    )
    with trio.fail_after(60):
        async with open_store(url, cfg.store, watermark=False) as store:  # recorded history
            for table, rows in rec.tables().items():
                async with store.sender(table) as send:
                    for row in rows:
                        await send.send(row)


def dedup_config(production: str, gatherers: dict[str, str], **sync: object) -> DedupConfig:
    return DedupConfig(
        gatherers=tuple(GathererSource(g, url) for g, url in gatherers.items()),
        production=ProductionConfig(url=production),
        sync=SyncConfig(**sync),  # type: ignore[arg-type]
        metrics=MetricsConfig(enabled=False),
        http=HttpConfig(port=0),
    )


MISSES = {
    "g0": [(40, 70, "seq_gap"), (200, 230, "reconnect")],
    "g1": [(60, 100, "reconnect"), (215, 240, "seq_gap")],
    "g2": [(20, 65, "seq_gap"), (150, 180, "reconnect"), (225, 260, "seq_gap")],
}


def recordings(
    truth: Truth,
    misses: dict[str, list[tuple[int, int, str]]],
    latencies_us: Sequence[int] | None = None,
) -> list[Recording]:
    """What each gatherer of ``misses`` recorded of ``truth``, the i-th one
    ``latencies_us[i]`` µs behind the exchange (by default 600 + 150 i)."""
    if latencies_us is None:
        latencies_us = [600 + 150 * i for i in range(len(misses))]
    return [
        record(truth, gid, m, conn_base=i + 1, latency_us=latency)
        for i, ((gid, m), latency) in enumerate(zip(misses.items(), latencies_us, strict=True))
    ]


def skewed_recordings(truth: Truth, skews_us: dict[str, int]) -> list[Recording]:
    """:func:`recordings` of :data:`MISSES`, each gatherer's clock ``skews_us[gid]`` µs off
    the exchange's (its receipts stamped that much later; negative: earlier)."""
    latencies = [600 + 150 * i + skews_us[gid] for i, gid in enumerate(MISSES)]
    return recordings(truth, MISSES, latencies)


def watermark_at_middle(urls: dict[str, str]) -> dict[str, int]:
    """Each gatherer says, in its own clock (its ingest watermark), that it has committed
    what it received before the middle of its order-book deltas; returns those cuts
    (gatherer id -> µs, its clock)."""
    cuts = {}
    for gid, url in urls.items():
        with connect_db(url) as db:
            received = sorted(r for (r,) in db.query("SELECT received_at FROM orderbook_deltas"))
            cuts[gid] = received[len(received) // 2]
            db.execute(
                "INSERT INTO ingest_watermark (gatherer_id, complete_before, updated_at)"
                " VALUES (%s, %s, %s)",
                (gid, cuts[gid], cuts[gid]),
            )
    return cuts


def assert_production_is_truth(
    url: str,
    truth: Truth,
    misses: dict[str, list[tuple[int, int, str]]],
    *,
    model: Any = recording,
) -> None:
    """Production holds exactly what the gatherers kept where it can be trusted
    (``model.covered``), its books are the truth's, and one ``merge_hole`` per stretch nobody
    kept (``model.holes``). ``model``: the module whose recordings the gatherers wrote."""
    covered, holes = model.covered, model.holes
    lists = list(misses.values())
    with connect_db(url) as db:
        trades = db.query("SELECT trade_id FROM trades ORDER BY trade_id")
        tickers = db.query("SELECT ticker, exchange_ts, volume FROM tickers ORDER BY 1, 2, 3")
        deltas = db.query(
            "SELECT exchange_ts, ticker, side, price, size_delta FROM orderbook_deltas"
            " ORDER BY 1, 2, 3, 4, 5"
        )
        gaps = db.query("SELECT ticker, start_ts, end_ts, kind FROM gaps ORDER BY 1, 2")
    assert [t for (t,) in trades] == sorted(e.trade_id for e in covered(truth, lists, "trade"))
    assert tickers == sorted(
        (e.ticker, e.exchange_ts, 100 * e.index) for e in covered(truth, lists, "ticker")
    )
    assert deltas == sorted(
        (e.exchange_ts, e.ticker, e.side, e.price, e.size) for e in covered(truth, lists, "delta")
    )
    assert production_books(url) == truth.books
    expected = sorted(holes(truth, lists))
    assert [(t, k) for t, _, _, k in gaps] == [(t, HOLE_KIND) for t, _ in expected]
    for (ticker, start, end, _), (_, first_lost) in zip(gaps, expected, strict=True):
        lost = truth.events[first_lost]
        # Exchange times run up to 4 steps backwards (kalshi.testing.recording), so the first
        # lost delta may be stamped a little before the last merged one.
        assert start - 4_000 <= lost.exchange_ts < end, ticker


async def merge_once(production: str, gatherers: dict[str, str], **sync: object) -> PassReport:
    """What ``kalshi dedup --once`` runs: one pass of a new deduplicator (no settle time),
    closed after; returns the pass's report. ``sync``: :func:`dedup_config`'s settings."""
    dedup = Deduplicator(dedup_config(production, gatherers, **sync))
    try:
        return await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()


async def write_all(
    make_db: Callable[..., str], recs: list[Recording], tmp: Path
) -> dict[str, str]:
    urls = {}
    for rec in recs:
        urls[rec.gatherer_id] = make_db()
        await write_recording(urls[rec.gatherer_id], rec, tmp / rec.gatherer_id)
    return urls
