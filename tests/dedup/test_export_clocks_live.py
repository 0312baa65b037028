"""The export running beside a long-running deduplicator and real gatherers on the
simulator whose clocks are 90 s ahead and 90 s behind (issue 18, item 6): S3 ends with
every production row exactly once, and production with every delta the exchange sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio
from dedup_support import dedup_config
from test_dedup_clocks import SECOND, _merge_forever, _record, _truth_deltas, _until_merged
from test_export_clocks import assert_s3_is_production_once, exports_of

from kalshi.config import parse_duration
from kalshi.dedup.export import ALL_WINDOWS, Exporter
from kalshi.dedup.service import Deduplicator
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US
from kalshi.testing.s3server import S3Server


async def _export_forever(exporter: Exporter, rounds: list[int]) -> None:
    """What `kalshi dedup` runs beside the merge: an export round every 0.2 s."""
    while True:
        rounds.append(len(await exporter.export_closed()))
        await trio.sleep(0.2)


async def test_export_beside_gatherers_with_skewed_clocks_holds_every_row_once(
    make_db: Callable[..., str], tmp_path: Path, s3_server: S3Server
) -> None:
    urls = {"g1": make_db(), "g2": make_db()}
    production = make_db()
    clocks = {"g1": 90 * SECOND, "g2": -90 * SECOND}
    s3 = s3_server.config("export-clocks-live", window=parse_duration("500ms"))
    async with open_sim_exchange(
        markets=12, active=6, rate=300.0, seed=44, port=0, start_us=PINNED_START_US, skew_s=120.0
    ) as sim:
        # While the exchange runs no window closes: g1's own watermark counts a row at the
        # earlier of its receipt and exchange time, so with its clock 90 s ahead the merge
        # waits 90 s for it (docs/reliability.md), and the export waits for the merge.
        dedup = Deduplicator(dedup_config(production, urls), settle=0.5)
        exporter = Exporter(production, s3)
        rounds: list[int] = []
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_merge_forever, dedup)
                nursery.start_soon(_export_forever, exporter, rounds)
                start = await _record(sim, tmp_path, urls, clocks, events=900)
                await _until_merged(production, sim, start)
                nursery.cancel_scope.cancel()
            # the gatherers have stopped: the newest windows too (`export --all-windows`)
            await dedup.run_pass(settle_us=0)
            during = sum(rounds)
            last = await exporter.export_closed(until=ALL_WINDOWS)
            assert await exporter.export_closed(until=ALL_WINDOWS) == []
        finally:
            exporter.close()
            dedup.close()
        counts = assert_s3_is_production_once(production, s3_server.objects(s3.bucket))
        expected = sum(map(len, _truth_deltas(sim, start).values()))
        recorded = exports_of(production)
        print(
            f"live export: {during} windows while recording ({len(rounds)} rounds),"
            f" {len(last)} at the end; per table (windows, partial, rewrites) {recorded};"
            f" S3 = production: {counts}; deltas of the exchange {expected}"
        )
        assert counts["orderbook_deltas"] == expected
