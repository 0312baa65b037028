"""Gatherer clocks off by tens of seconds, against the real simulator, real gatherers and
real PostgreSQL (issue 18 item 6): the order-book merge works from what each gatherer
committed (its own watermark, in its own clock), so production equals the exchange's
truth however far the gatherers' clocks are from the deduplicator's and from each other."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from dedup_support import dedup_config, merge_once

from kalshi.auth import Signer, load_private_key
from kalshi.clock import system_wall_us
from kalshi.dedup import production_books
from kalshi.dedup.merge import HOLE_KIND
from kalshi.dedup.service import Deduplicator
from kalshi.gather.service import Gatherer
from kalshi.models.book import BookDelta, Side
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for

SECOND = 1_000_000


def _books_settled(gatherer: Gatherer, sim: object) -> bool:
    truth = sim.truth  # type: ignore[attr-defined]
    layout = gatherer.layout
    return (
        layout is not None
        and all(c.state == "live" for c in layout.connections)
        and not gatherer.processor.stale
        and all(
            gatherer.processor.books.get(t) == truth.book(t)
            for t in sim.engine.active_tickers  # type: ignore[attr-defined]
        )
    )


def _subscribed(gatherer: Gatherer) -> bool:
    """Every connection live and every book snapshotted (the exchange may be running)."""
    layout = gatherer.layout
    return (
        layout is not None
        and all(c.state == "live" for c in layout.connections)
        and not gatherer.processor.stale
    )


def _truth_deltas(sim: object, start: int) -> dict[str, list[tuple[bool, int, int]]]:
    out: dict[str, list[tuple[bool, int, int]]] = defaultdict(list)
    for event in sim.truth.events[start:]:  # type: ignore[attr-defined]
        if isinstance(event.model, BookDelta):
            d = event.model
            out[d.ticker].append((d.side is Side.YES, d.price, d.delta))
    return dict(out)


def _production(url: str) -> tuple[dict[str, list[tuple[bool, int, int]]], dict[str, int], int]:
    """Per market its deltas in ``seq`` order, its snapshots, and the merge holes."""
    with connect_db(url) as db:
        rows = db.query(
            "SELECT ticker, side, price, size_delta FROM orderbook_deltas ORDER BY ticker, seq"
        )
        snaps = db.query("SELECT ticker, count(*) FROM orderbook_snapshots GROUP BY 1")
        (holes,) = db.query("SELECT count(*) FROM gaps WHERE kind = %s", (HOLE_KIND,))[0]
    deltas: dict[str, list[tuple[bool, int, int]]] = defaultdict(list)
    for ticker, side, price, change in rows:
        deltas[ticker].append((side, price, change))
    return dict(deltas), {t: int(n) for t, n in snaps}, int(holes)


def _skewed(offset_us: int) -> Callable[[], int]:
    return lambda: system_wall_us() + offset_us


async def _record(
    sim: object,
    tmp_path: Path,
    urls: dict[str, str],
    clocks: dict[str, int],
    *,
    events: int,
    during: Callable[[], object] | None = None,
) -> int:
    """Run one gatherer per entry of ``clocks`` (its clock that far from ours) until the
    exchange generated ``events`` messages after every book was live; stop them (SIGTERM's
    path: everything flushed, the final watermark written). Returns the truth index at
    which the exchange resumed."""
    engine = sim.engine  # type: ignore[attr-defined]
    engine.pause()
    signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))  # type: ignore[attr-defined]
    gatherers = [
        Gatherer(
            sim_config(sim, tmp_path / gid, urls[gid], gatherer_id=gid),
            urls[gid],
            signer=signer,
            wall_us=_skewed(offset),
        )
        for gid, offset in clocks.items()
    ]
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for gatherer in gatherers:
                await nursery.start(gatherer.run)
            await wait_for(lambda: all(_books_settled(g, sim) for g in gatherers))
            start = len(sim.truth.events)  # type: ignore[attr-defined]
            engine.resume()
            if during is not None:
                await wait_for(lambda: len(sim.truth.events) >= start + events // 3)  # type: ignore[attr-defined]
                during()
            await wait_for(lambda: len(sim.truth.events) >= start + events)  # type: ignore[attr-defined]
            engine.pause()
            await wait_for(lambda: all(_books_settled(g, sim) for g in gatherers))
            for gatherer in gatherers:
                await gatherer.committed()
            nursery.cancel_scope.cancel()
    return start


def _assert_production_is_truth(production: str, sim: object, start: int) -> None:
    expected = _truth_deltas(sim, start)
    deltas, snapshots, holes = _production(production)
    books = production_books(production)
    active = sim.engine.active_tickers  # type: ignore[attr-defined]
    print(
        f"production: {sum(map(len, deltas.values()))} deltas of"
        f" {sum(map(len, expected.values()))}, {sum(snapshots.values())} snapshots"
        f" for {len(snapshots)} markets, {holes} merge holes"
    )
    assert holes == 0
    assert set(snapshots.values()) == {1}  # one snapshot per market: no restart
    assert {t: d for t, d in deltas.items() if d} == expected
    for ticker in active:
        assert books[ticker] == sim.truth.book(ticker), ticker  # type: ignore[attr-defined]


@pytest.mark.parametrize("ahead_s", [20, 90])
async def test_once_after_gatherers_with_clocks_ahead_and_behind_is_the_truth(
    make_db: Callable[..., str], tmp_path: Path, ahead_s: int
) -> None:
    # g1's clock runs ahead of the deduplicator's (its receipts look like the future), g2's
    # 90 s behind: `dedup --once` right after both stopped must merge every row.
    urls = {"g1": make_db(), "g2": make_db()}
    production = make_db()
    clocks = {"g1": ahead_s * SECOND, "g2": -90 * SECOND}
    async with open_sim_exchange(
        markets=12, active=6, rate=300.0, seed=18, port=0, start_us=PINNED_START_US, skew_s=120.0
    ) as sim:
        start = await _record(sim, tmp_path, urls, clocks, events=600)
        report = await merge_once(production, urls)  # what `kalshi dedup --once` runs
        print(f"--once: {dict(report.merged)}, switches {report.switches}")
        _assert_production_is_truth(production, sim, start)


async def _merge_forever(dedup: Deduplicator) -> None:
    """A long-running deduplicator: a pass every 0.2 s (``sync.poll_interval``)."""
    while True:
        await dedup.run_pass()
        await trio.sleep(0.2)


def _production_deltas(url: str) -> int:
    with connect_db(url) as db:
        return int(db.query("SELECT count(*) FROM orderbook_deltas")[0][0])


async def _until_merged(production: str, sim: object, start: int) -> None:
    """Wait (the long-running deduplicator works in its own task) until production holds
    as many deltas as the exchange generated since ``start``."""
    expected = sum(map(len, _truth_deltas(sim, start).values()))
    with trio.fail_after(60):
        await wait_for(lambda: _production_deltas(production) >= expected, step=0.2)


async def test_a_long_running_dedup_beside_gatherers_with_skewed_clocks_is_the_truth(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    urls = {"g1": make_db(), "g2": make_db()}
    production = make_db()
    clocks = {"g1": 90 * SECOND, "g2": -90 * SECOND}
    async with open_sim_exchange(
        markets=12, active=6, rate=300.0, seed=19, port=0, start_us=PINNED_START_US, skew_s=120.0
    ) as sim:
        dedup = Deduplicator(dedup_config(production, urls))  # settle 5 s, like `kalshi dedup`
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_merge_forever, dedup)
                start = await _record(sim, tmp_path, urls, clocks, events=900)
                await _until_merged(production, sim, start)
                nursery.cancel_scope.cancel()
        finally:
            dedup.close()
        print(f"long-running: {dedup.passes} passes")
        _assert_production_is_truth(production, sim, start)


async def test_a_gatherer_down_while_the_other_is_late_leaves_production_complete(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # g1 (clock 90 s ahead) is stopped for a while and comes back; meanwhile g2 (90 s
    # behind), the only one recording, cannot write its order-book rows (its tables are
    # locked): they reach its database late, with their old receipt times. A deduplicator
    # running all along must wait for them rather than leave a hole.
    urls = {"g1": make_db(), "g2": make_db()}
    production = make_db()
    clocks = {"g1": 90 * SECOND, "g2": -90 * SECOND}
    async with open_sim_exchange(
        markets=12, active=6, rate=300.0, seed=20, port=0, start_us=PINNED_START_US, skew_s=120.0
    ) as sim:
        engine = sim.engine
        engine.pause()
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))

        def gatherer(gid: str) -> Gatherer:
            cfg = sim_config(
                sim, tmp_path / gid, urls[gid], gatherer_id=gid,
                **{"timescaledb.lock_timeout": "200ms"},
            )  # fmt: skip
            return Gatherer(cfg, urls[gid], signer=signer, wall_us=_skewed(clocks[gid]))

        async def run(g: Gatherer, scope: trio.CancelScope) -> None:
            with scope:
                await g.run()

        def generated(n: int) -> Callable[[], bool]:
            return lambda: len(sim.truth.events) >= start + n

        dedup = Deduplicator(dedup_config(production, urls))
        g1, g2 = gatherer("g1"), gatherer("g2")
        scopes = [trio.CancelScope(), trio.CancelScope()]
        try:
            with trio.fail_after(120), connect_db(urls["g2"]) as locker:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run, g1, scopes[0])
                    nursery.start_soon(run, g2, scopes[1])
                    await wait_for(lambda: _books_settled(g1, sim) and _books_settled(g2, sim))
                    nursery.start_soon(_merge_forever, dedup)
                    start = len(sim.truth.events)
                    engine.resume()
                    await wait_for(generated(300))
                    locker.execute("BEGIN")
                    locker.execute("LOCK TABLE orderbook_deltas IN ACCESS EXCLUSIVE MODE")
                    locker.execute("LOCK TABLE orderbook_snapshots IN ACCESS EXCLUSIVE MODE")
                    await wait_for(generated(450))
                    scopes[0].cancel()  # g1 down: only g2 records, and its rows wait
                    await wait_for(generated(900))
                    g1 = gatherer("g1")
                    scopes[0] = trio.CancelScope()
                    nursery.start_soon(run, g1, scopes[0])
                    await wait_for(lambda: _subscribed(g1))
                    await wait_for(generated(1200))
                    locker.execute("ROLLBACK")  # g2's late rows reach its database
                    await wait_for(generated(1500))
                    engine.pause()
                    await wait_for(lambda: _books_settled(g1, sim) and _books_settled(g2, sim))
                    await g1.committed()
                    await g2.committed()
                    scopes[0].cancel()
                    scopes[1].cancel()
                    await _until_merged(production, sim, start)
                    nursery.cancel_scope.cancel()
        finally:
            dedup.close()
        with connect_db(urls["g1"]) as db:
            outages = db.query("SELECT count(*) FROM gaps WHERE kind = 'outage'")[0][0]
        print(f"down and back: g1 outage gaps {outages}, {dedup.passes} passes")
        assert outages > 0
        _assert_production_is_truth(production, sim, start)


async def test_a_resnapshot_by_a_gatherer_whose_clock_is_behind_restarts_the_stream(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # A skipped seq makes the gatherer resnapshot its books; production restarts each
    # market's stream there (a merge hole: no gatherer has the lost frames). A WebSocket
    # snapshot is dated by its receipt: 90 s behind, it must still count as after the
    # last merged delta.
    urls = {"g2": make_db()}
    production = make_db()
    async with open_sim_exchange(
        markets=12, active=6, rate=300.0, seed=21, port=0, start_us=PINNED_START_US, skew_s=120.0
    ) as sim:

        def skip() -> None:
            sim.faults.skip_seq(1)

        start = await _record(sim, tmp_path, urls, {"g2": -90 * SECOND}, events=900, during=skip)
        report = await merge_once(production, urls)
        print(f"resnapshot: {dict(report.merged)}, holes {report.holes}")
        books = production_books(production)
        deltas, snapshots, holes = _production(production)
        expected = _truth_deltas(sim, start)
        print(
            f"production: {sum(map(len, deltas.values()))} deltas of"
            f" {sum(map(len, expected.values()))}, {sum(snapshots.values())} snapshots,"
            f" {holes} merge holes"
        )
        assert holes == report.holes > 0
        # each hole restarts its market's stream at a resnapshot: one snapshot more
        assert sum(snapshots.values()) == len(snapshots) + holes
        for ticker in sim.engine.active_tickers:
            assert books[ticker] == sim.truth.book(ticker), ticker
