"""The REST snapshot poller: whole books 100 markets per request (``GET
/markets/orderbooks``, kalshi-api.md §4.5), stored with ``source='rest'`` and compared with
the live books."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from kalshi.gather import metrics
from kalshi.gather.context import GatherContext
from kalshi.gather.layout import Layout
from kalshi.gather.registry import MarketRegistry
from kalshi.gather.rest_tasks import (
    list_markets,
    poll_snapshots,
    release_matched,
    settle_mismatches,
    snapshot_pass,
)
from kalshi.gather.service import Gatherer
from kalshi.journal import read_journal
from kalshi.models.rows import GapRow
from kalshi.net import RestClient
from kalshi.replay import replay_into_db
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from kalshi.testing.memory import memory_transport
from tests.gather.support import sim_config, wait_for
from tests.gather.test_connection_timing import context
from tests.gather.test_gather_sim import all_live, settled, signer_of
from tests.gather.test_liveness import collecting_context, collecting_sink, wait_state


def _resnapshots(reason: str) -> float:
    return metrics.RESNAPSHOTS.labels(reason)._value.get()


def _requests(endpoint: str) -> float:
    return metrics.REST_REQUESTS.labels(endpoint, "200")._value.get()


async def test_one_pass_polls_every_live_market_in_bulk(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=400, active=250, rate=400.0, seed=8, port=0, start_us=PINNED_START_US
    ) as sim:
        cfg = sim_config(
            sim,
            tmp_path,
            db_url,
            **{"snapshot_poller.enabled": True, "snapshot_poller.interval": "1s"},
        )
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        single = _requests("/markets/{ticker}/orderbook")
        mismatches = metrics.SNAPSHOT_MISMATCHES._value.get()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                await wait_for(lambda: all_live(gatherer))
                sim.engine.pause()
                await wait_for(lambda: settled(gatherer, sim))
                polled = _requests("/markets/orderbooks")
                live = sorted(gatherer.registry.live)
                # the next pass starts after this one; it is complete when the one after starts
                await wait_for(
                    lambda: _requests("/markets/orderbooks") >= polled + 2 * -(-len(live) // 100)
                )
                nursery.cancel_scope.cancel()
        truth = sim.truth
    assert len(live) > 200
    assert _requests("/markets/{ticker}/orderbook") == single
    assert metrics.SNAPSHOT_MISMATCHES._value.get() == mismatches
    with connect_db(db_url) as db:
        rows = db.query(
            "SELECT DISTINCT ON (ticker) ticker, yes_bids::text, no_bids::text"
            " FROM orderbook_snapshots WHERE source = 'rest' ORDER BY ticker, snapshot_ts DESC"
        )
    assert [r[0] for r in rows] == live
    for ticker, yes, no in rows:
        book = truth.book(ticker)
        assert {p: s for p, s in orjson.loads(yes)} == book.yes, ticker
        assert {p: s for p, s in orjson.loads(no)} == book.no, ticker


async def _listed(sim: Any, ctx: GatherContext) -> MarketRegistry:
    registry = MarketRegistry("t1")
    async with RestClient(
        sim.rest_url, ctx.signer, rate=1000, transport=memory_transport(sim)
    ) as rest:
        await list_markets(ctx, rest, registry)
    return registry


@pytest.mark.parametrize(("in_flight", "seconds"), [(8, 10.0), (1, 40.0)])
async def test_a_pass_takes_its_requests_over_the_rate_not_the_sum_of_their_latencies(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    in_flight: int,
    seconds: float,
) -> None:
    """2 000 live markets: 20 requests at 2/s (a burst of 4 first), each answered 2 s late.
    With 8 in flight the pass takes about 20 / 2 = 10 s; one at a time, 20 x 2 = 40 s."""
    async with (
        open_sim_exchange(
            markets=2600, active=2, rate=5.0, seed=9, port=0, start_us=PINNED_START_US
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()
        sink, rows = collecting_sink(nursery)
        ctx = context(sim, tmp_path, None, sink)
        registry = await _listed(sim, ctx)
        tickers = sorted(registry.live)[:2000]
        assert len(tickers) == 2000
        sim.rest_latency = 2.0
        async with RestClient(
            sim.rest_url, ctx.signer, rate=2.0, transport=memory_transport(sim)
        ) as rest:
            started = trio.current_time()
            mismatched = await snapshot_pass(ctx, rest, tickers, in_flight)
            took = trio.current_time() - started
            assert (rest.requests, rest.retries) == (20, 0)
        await trio.testing.wait_all_tasks_blocked()
        polled = rows["orderbook_snapshots"]
        nursery.cancel_scope.cancel()
    assert took == pytest.approx(seconds, abs=0.1)
    assert mismatched == []  # no live book to differ from
    assert [r.ticker for r in polled] == tickers  # in the order of the tickers, each once
    for row in polled:
        book = sim.truth.book(row.ticker)
        assert row.source == "rest"
        assert {p: s for p, s in orjson.loads(row.yes_bids)} == book.yes, row.ticker
        assert {p: s for p, s in orjson.loads(row.no_bids)} == book.no, row.ticker


async def _answer_times(sim: Any, tmp_path: Path, interval: str) -> list[float]:
    """When the first 60 answers of ``poll_snapshots`` came (virtual s from its start):
    three passes over 2 000 markets at 2 requests/s, each answered 2 s late."""
    async with trio.open_nursery() as nursery:
        sim.engine.pause()
        sink, _ = collecting_sink(nursery)
        ctx = context(
            sim,
            tmp_path,
            None,
            sink,
            **{"snapshot_poller.interval": interval, "snapshot_poller.max_markets": 2000},
        )
        registry = await _listed(sim, ctx)
        sim.rest_latency = 2.0
        answered: list[float] = []

        def counted(endpoint: str, status: int) -> None:
            answered.append(trio.current_time())

        async with RestClient(
            sim.rest_url,
            ctx.signer,
            rate=2.0,
            on_request=counted,
            transport=memory_transport(sim),
        ) as rest:
            start = trio.current_time()
            nursery.start_soon(poll_snapshots, ctx, rest, registry, Layout(ctx, sharded=False))
            while len(answered) < 60:  # noqa: ASYNC110 - three passes of 20 requests
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    return [round(t - start, 1) for t in answered[:60]]


async def test_passes_start_every_interval_from_the_start(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A 10 s pass every 30 s starts at 30, 60 and 90 s (not 30, 70, 110: the interval
    after each pass); its first answer comes 2 s later, its last 10 s after its start."""
    async with open_sim_exchange(
        markets=2600, active=2, rate=5.0, seed=9, port=0, start_us=PINNED_START_US
    ) as sim:
        answered = await _answer_times(sim, tmp_path, "30s")
    assert [answered[i] for i in (0, 19, 20, 39, 40, 59)] == [32, 40, 62, 70, 92, 100]


async def test_a_pass_longer_than_the_interval_is_logged_and_the_next_starts_when_it_ends(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 10 s pass every 6 s: never two at once, each next one starts as the last ends."""
    async with open_sim_exchange(
        markets=2600, active=2, rate=5.0, seed=9, port=0, start_us=PINNED_START_US
    ) as sim:
        answered = await _answer_times(sim, tmp_path, "6s")
    # passes 6-16 s, 16-26 s, 26-36 s: each first answer 2 s after the last one's end
    assert [answered[i] for i in (0, 19, 20, 39, 40, 59)] == [8, 16, 18, 26, 28, 36]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[:3] == ["snapshot pass: 2000 markets in 10.0s (interval 6s)"] * 3


async def test_deltas_in_flight_are_no_mismatch_and_a_real_difference_is(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    """Outside tester F3 (`4|8|3|3|7 live books differ from REST` at every poll with 15
    markets trading, no fault): deltas the exchange published before it answered
    ``GET /markets/orderbooks`` reach the gatherer after it handled the answer (held 1 s on
    the WebSocket); the live book then passes through the answer's state: no mismatch
    (before, every market that moved was one). A live book changed behind the pipeline's
    back is one, and is resnapshotted: an open ``book_invalid`` gap of its connection from
    the REST request's send, ended by the resnapshot; the journal replays to the same
    rows."""
    async with open_sim_exchange(
        markets=60, active=15, rate=200.0, seed=6, port=0, start_us=PINNED_START_US
    ) as sim:
        cfg = sim_config(sim, tmp_path, db_url)
        gatherer = Gatherer(cfg, db_url, signer=signer_of(sim))
        mismatches = metrics.SNAPSHOT_MISMATCHES._value.get()
        in_flight = metrics.SNAPSHOT_IN_FLIGHT._value.get()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                await wait_for(lambda: all_live(gatherer))
                sim.engine.pause()
                await wait_for(lambda: settled(gatherer, sim))
                ctx, layout = gatherer.ctx, gatherer.layout
                assert ctx is not None and layout is not None
                tickers = sorted(gatherer.registry.live)
                before = {t: sim.truth.book(t).copy() for t in tickers}
                sim.faults.delay(1.0)
                sim.engine.step(40)
                moved = [t for t in tickers if sim.truth.book(t) != before[t]]
                assert moved
                async with RestClient(sim.rest_url, ctx.signer, rate=100) as rest:
                    # the answer holds the deltas, the live books not yet
                    assert await snapshot_pass(ctx, rest, tickers, 1) == moved
                    store = gatherer.store
                    assert store is not None
                    # not matched at the reply: the watermark stays at the send meanwhile
                    first = min(gatherer.processor.watches[t].since for t in moved)
                    assert store.complete_before(ctx.wall_us()) <= first
                    await wait_for(lambda: settled(gatherer, sim))  # the deltas arrived
                    release_matched(ctx)  # between passes: matched late, let go
                    assert gatherer.processor.watches == {}
                    assert metrics.SNAPSHOT_IN_FLIGHT._value.get() == in_flight + len(moved)
                    await wait_for(lambda: store.complete_before(ctx.wall_us()) > first)
                    await settle_mismatches(ctx, layout)
                    assert metrics.SNAPSHOT_MISMATCHES._value.get() == mismatches
                    assert metrics.SNAPSHOT_IN_FLIGHT._value.get() == in_flight + len(moved)
                    assert ctx.gaps["book_invalid"] == 0
                    # A real difference: the live book holds 1.00 more at a NO level.
                    ticker = moved[0]
                    book = gatherer.processor.books[ticker]
                    price = max(book.no) if book.no else 1000
                    book.no[price] = book.no.get(price, 0) + 100
                    assert await snapshot_pass(ctx, rest, tickers, 1) == [ticker]
                    sent = gatherer.processor.watches[ticker].since  # the request's send
                    asked = {r: _resnapshots(r) for r in ("gap", "rest_mismatch")}
                    release_matched(ctx)  # never matched: stays, and so does the hold
                    assert list(gatherer.processor.watches) == [ticker]
                    assert store.complete_before(ctx.wall_us()) <= sent
                    await settle_mismatches(ctx, layout)
                    assert metrics.SNAPSHOT_MISMATCHES._value.get() == mismatches + 1
                    assert ticker in gatherer.processor.stale
                    assert ctx.gaps["book_invalid"] == 1
                await wait_for(lambda: settled(gatherer, sim))  # resnapshotted
                # counted once, under its reason (before: under "gap" too)
                assert {r: _resnapshots(r) - n for r, n in asked.items()} == {
                    "gap": 0,
                    "rest_mismatch": 1,
                }
                await gatherer.committed()
                # the gap row committed, the hold gone: the watermark passes the send
                await wait_for(lambda: store.complete_before(ctx.wall_us()) > sent)
                nursery.cancel_scope.cancel()
    detail = f"{ticker}: live book never matched its REST order book; resnapshot"
    with connect_db(db_url) as db:
        gaps = db.query(
            "SELECT start_ts, end_ts, conn_id, sid, ticker, kind, expected_seq, got_seq, detail"
            " FROM gaps"
        )
        # its connection: the one its WebSocket snapshots came on; the end: the first
        # of them after the send (the resnapshot)
        ((conn_id, sid, resnapshot),) = db.query(
            "SELECT conn_id, sid, received_at FROM orderbook_snapshots WHERE ticker = %s"
            " AND source = 'ws' AND received_at > %s ORDER BY received_at LIMIT 1",
            (ticker, sent),
        )
    assert gaps == [(sent, resnapshot, conn_id, sid, ticker, "book_invalid", None, None, detail)]
    # The journal (the REST answers, the gap marker, the frames) replays to the same rows.
    stats = await replay_into_db(read_journal([tmp_path / "journal"]), other_db_url, cfg.store)
    assert stats.problems == []
    for table in ("gaps", "orderbook_deltas", "orderbook_snapshots"):
        with connect_db(db_url) as live, connect_db(other_db_url) as replayed:
            assert set(replayed.fetch_rows(table)) == set(live.fetch_rows(table)), table


Held = list[tuple[str, object, int | None, float]]


async def _one_book(
    sim: Any, tmp_path: Path, nursery: trio.Nursery
) -> tuple[GatherContext, dict[str, list[Any]], Layout, MarketRegistry, Held]:
    """The simulator's one active market's live book, matching the exchange, its engine
    paused; the snapshot poller's config: every 30 s, ``settle_after: 3s``. ``held``: the
    watermark holds and releases (kind, key, since, virtual time)."""
    ctx, rows = collecting_context(
        sim,
        tmp_path,
        nursery,
        **{"snapshot_poller.interval": "30s", "snapshot_poller.settle_after": "3s"},
    )
    held: Held = []
    ctx.hold = lambda key, since: held.append(("hold", key, since, trio.current_time()))
    ctx.release = lambda key: held.append(("release", key, None, trio.current_time()))
    layout = Layout(ctx, sharded=False)
    (ticker,) = sim.engine.active_tickers
    layout.on_markets([ticker], [])
    conn = layout.pools["orderbook_delta"].owner[ticker]
    nursery.start_soon(conn.run)
    await wait_state(conn, "live")
    while ctx.processor.books.get(ticker) != sim.truth.book(ticker):  # noqa: ASYNC110
        await trio.sleep(0.01)
    sim.engine.pause()
    return ctx, rows, layout, await _listed(sim, ctx), held


async def test_a_real_difference_is_settled_settle_after_its_reply_not_at_the_next_pass(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A live book changed behind the pipeline's back, polled every 30 s with
    ``settle_after: 3s``: the first pass's answer (at 30 s) is not matched, so the ingest
    watermark is held at the request's send from the reply; 3 s later (not at the next
    pass, 60 s) the difference is counted, its open ``book_invalid`` gap row made from the
    send, the hold released and the book resnapshotted, which ends the gap."""
    async with (
        open_sim_exchange(
            markets=10, active=1, rate=20.0, seed=12, port=0, start_us=PINNED_START_US
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        ctx, rows, layout, registry, held = await _one_book(sim, tmp_path, nursery)
        (ticker,) = sim.engine.active_tickers
        processor = ctx.processor
        # A real difference: the live book holds 1.00 more at a NO level.
        book = processor.books[ticker]
        price = max(book.no) if book.no else 1000
        book.no[price] = book.no.get(price, 0) + 100
        mismatches = metrics.SNAPSHOT_MISMATCHES._value.get()
        in_flight = metrics.SNAPSHOT_IN_FLIGHT._value.get()
        asked = _resnapshots("rest_mismatch")
        async with RestClient(
            sim.rest_url, ctx.signer, rate=1000, transport=memory_transport(sim)
        ) as rest:
            start = trio.current_time()
            nursery.start_soon(poll_snapshots, ctx, rest, registry, layout)
            while not held or held[-1][0] != "release":  # noqa: ASYNC110
                await trio.sleep(0.01)
            gaps = list(rows["gaps"])
            while processor.books.get(ticker) != sim.truth.book(ticker):  # noqa: ASYNC110
                await trio.sleep(0.01)
            while len(rows["gaps"]) < 2:  # noqa: ASYNC110 - the copy with the end
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    key = ("rest-watch", ticker)
    ((_, _, sent, replied), release) = held
    assert held[0] == ("hold", key, sent, replied)
    assert round(replied - start, 3) == 30.0  # the first pass's reply
    assert release == ("release", key, None, replied + 3.0)  # settle_after later
    detail = f"{ticker}: live book never matched its REST order book; resnapshot"
    opened = GapRow(
        start_ts=sent,
        end_ts=None,
        gatherer_id="t1",
        conn_id=gaps[0].conn_id,
        sid=1,
        ticker=ticker,
        kind="book_invalid",
        expected_seq=None,
        got_seq=None,
        detail=detail,
    )
    assert gaps[0] == opened  # made by the release
    (closed,) = rows["gaps"][1:]  # the resnapshot ended it
    assert closed == opened._replace(end_ts=closed.end_ts) and closed.end_ts > sent
    assert metrics.SNAPSHOT_MISMATCHES._value.get() == mismatches + 1
    assert metrics.SNAPSHOT_IN_FLIGHT._value.get() == in_flight
    assert _resnapshots("rest_mismatch") == asked + 1
    assert ticker not in processor.stale


async def test_deltas_in_flight_past_the_reply_are_let_go_before_settle_after(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The market moves at 29.5 s, its deltas held 2 s on the WebSocket: the pass's answer
    (30 s) holds them, the live book not yet, so the watermark is held at the send; the
    deltas arrive at 31.5 s, the book reaches the answer, and the next check (every second)
    lets the hold go, before ``settle_after`` (3 s): no difference, no gap row."""
    async with (
        open_sim_exchange(
            markets=10, active=1, rate=20.0, seed=12, port=0, start_us=PINNED_START_US
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        ctx, rows, layout, registry, held = await _one_book(sim, tmp_path, nursery)
        (ticker,) = sim.engine.active_tickers
        before = sim.truth.book(ticker).copy()
        mismatches = metrics.SNAPSHOT_MISMATCHES._value.get()
        in_flight = metrics.SNAPSHOT_IN_FLIGHT._value.get()
        async with RestClient(
            sim.rest_url, ctx.signer, rate=1000, transport=memory_transport(sim)
        ) as rest:
            start = trio.current_time()
            nursery.start_soon(poll_snapshots, ctx, rest, registry, layout)
            await trio.sleep_until(start + 29.5)
            sim.faults.delay(2.0)
            sim.engine.step(40)
            assert sim.truth.book(ticker) != before
            while not held or held[-1][0] != "release":  # noqa: ASYNC110
                await trio.sleep(0.01)
            await trio.sleep_until(start + 40)  # past settle_after: nothing more
        nursery.cancel_scope.cancel()
    ((_, _, sent, replied), (_, _, _, released)) = held
    assert held == [
        ("hold", ("rest-watch", ticker), sent, replied),
        ("release", ("rest-watch", ticker), None, released),
    ]
    assert round(replied - start, 3) == 30.0
    assert round(released - start, 3) == 32.0  # the check after the deltas came (31.5 s)
    assert rows["gaps"] == []
    assert ctx.processor.books[ticker] == sim.truth.book(ticker)
    assert metrics.SNAPSHOT_MISMATCHES._value.get() == mismatches
    assert metrics.SNAPSHOT_IN_FLIGHT._value.get() == in_flight + 1


async def test_a_pass_logs_its_failed_requests_in_one_line(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The exchange answers 503 to every try (the client's 8 attempts each): the pass's
    requests are one WARNING line (how many, the markets skipped, the last error), each at
    DEBUG, instead of a WARNING per request (2 500 a pass at 250 000 markets)."""
    async with (
        open_sim_exchange(
            markets=300, active=2, rate=5.0, seed=9, port=0, start_us=PINNED_START_US
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()
        sink, rows = collecting_sink(nursery)
        ctx = context(sim, tmp_path, None, sink)
        registry = await _listed(sim, ctx)
        tickers = sorted(registry.live)[:250]
        sim.faults.rest_5xx(3600.0)
        caplog.set_level("DEBUG", logger="kalshi.gather.rest")
        async with RestClient(
            sim.rest_url, ctx.signer, rate=1000, transport=memory_transport(sim)
        ) as rest:
            assert await snapshot_pass(ctx, rest, tickers, 2) == []
        nursery.cancel_scope.cancel()
    assert rows["orderbook_snapshots"] == []
    records = [r for r in caplog.records if r.name == "kalshi.gather.rest"]
    warnings = [r.getMessage() for r in records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "snapshot pass: 3 request(s) failed (250 markets skipped until the next pass), last: "
    )
    assert warnings[0].endswith("; each at DEBUG")
    failed = [r.getMessage() for r in records if r.levelname == "DEBUG"]
    assert [m.split(" failed: ")[0] for m in failed] == [
        f"snapshot poll of {n} markets from {tickers[i]}"
        for n, i in ((100, 0), (100, 100), (50, 200))
    ]
