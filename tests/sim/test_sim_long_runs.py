"""The simulator at full size for long runs (issue 20): no generated message kept in memory
(the truth streams to disk), trades kept only for the REST window, most markets quiet and a
few busy, and scheduled bursts."""

from __future__ import annotations

import io
from collections import Counter

import httpx
import orjson
import trio

from kalshi.models.trade import Trade
from kalshi.sim.engine import Engine
from kalshi.sim.truth import Truth
from kalshi.sim.universe import Universe
from kalshi.testing import PINNED_START_US, sim
from kalshi.wire import decode_trades_page


async def test_the_truth_streams_and_nothing_is_kept(mock_clock: object) -> None:
    stream = io.BytesIO()
    async with sim(markets=200, active=40, seed=9, keep_events=False, truth_stream=stream) as ex:
        generated = ex.engine.step(3000)
        truth = ex.truth
        assert truth.events == []
        assert truth.generated == generated == sum(truth.events_generated.values())
        lines = stream.getvalue().splitlines()
        assert len(lines) == generated
        kinds = Counter(orjson.loads(line)["type"] for line in lines)
        assert kinds == truth.events_generated
        trade_ids = [
            orjson.loads(line)["msg"]["trade_id"] for line in lines if b'"type":"trade"' in line
        ]
        assert trade_ids == [t.trade_id for t in truth.trades]
        closing = io.BytesIO()
        truth.stream = closing
        closing_value: list[bytes] = []
        closing.close = lambda: closing_value.append(closing.getvalue())  # type: ignore[method-assign]
        truth.close_stream()
        summary = orjson.loads(closing_value[0])
        assert summary["type"] == "summary"
        assert summary["events_generated"] == dict(truth.events_generated)


async def test_only_the_trade_window_is_kept_and_served(mock_clock: object) -> None:
    now = [PINNED_START_US]
    async with (
        sim(
            markets=100, active=20, seed=4, trade_window_s=60, clock=lambda: now[0], tier=None
        ) as ex,
        httpx.AsyncClient(base_url=ex.rest_url) as client,
    ):
        for _ in range(300):  # 300 s of activity, one step a second
            now[0] += 1_000_000
            ex.engine.step(100)
        kept = list(ex.truth.trades)
        newest = kept[-1].exchange_ts
        assert ex.truth.trades_offset > 0
        # forgotten in chunks: nothing younger than the window is gone, little older is left
        assert kept[0].exchange_ts <= newest - 60_000_000
        assert len(kept) <= 2048 + sum(1 for t in kept if t.exchange_ts >= newest - 60_000_000)
        served: list[Trade] = []
        cursor = ""
        while True:
            params = {"limit": 100, "cursor": cursor} if cursor else {"limit": 100}
            page, cursor_or_none = decode_trades_page(
                (await client.get("/markets/trades", params=params)).content
            )
            served += page
            if cursor_or_none is None:
                break
            cursor = cursor_or_none
        assert [t.trade_id for t in served] == [t.trade_id for t in reversed(kept)]


async def test_busy_markets_take_most_of_the_activity(mock_clock: object) -> None:
    async with sim(markets=400, active=100, seed=5, busy=10, keep_events=True) as ex:
        ex.engine.step(5000)
        busy = set(ex.engine.active_tickers[:10])
        deltas = [e for e in ex.truth.events if e.type == "orderbook_delta"]
        on_busy = sum(1 for e in deltas if e.ticker in busy)
        # 80 % of the actions go to the busy ten, plus their share of the other 20 %
        assert 0.78 <= on_busy / len(deltas) <= 0.86, on_busy / len(deltas)


async def test_bursts_multiply_the_rate_on_schedule(autojump_clock: object) -> None:
    base = PINNED_START_US

    def clock() -> int:
        return base + int(trio.current_time() * 1e6)

    async with sim(
        markets=100, active=20, seed=6, rate=100.0, clock=clock,
        burst_every=60.0, burst_x=20.0, burst_seconds=10.0, keep_events=True,
    ) as ex:  # fmt: skip
        start = trio.current_time()
        await trio.sleep(125)
        ex.engine.pause()
        per_second = Counter(int((e.ts_us - base) // 1_000_000 - start) for e in ex.truth.events)
        assert ex.engine.bursts == 2
    burst = sum(per_second[s] for s in range(61, 70)) / 9
    quiet = sum(per_second[s] for s in range(71, 119)) / 48
    assert 70 <= quiet <= 130, quiet
    assert 1600 <= burst <= 2400, burst


async def test_a_pause_does_not_count_toward_the_next_burst(autojump_clock: object) -> None:
    """The engine paused while the gatherers start (``just scale``: 148 s at 250 000
    markets on a busy machine) and resumed: the first burst comes ``burst_every`` of running
    time after the start, not at the resume. Issue 20: with ``--burst-every 50`` a burst
    began in the recording's first second (4 bursts in 3 minutes), and the error 25 that
    followed it 20-26 s in was taken for one "before any burst"."""
    async with sim(
        markets=100, active=20, seed=6, rate=100.0, burst_every=50.0, burst_seconds=10.0,
    ) as ex:  # fmt: skip
        await trio.sleep(5)
        ex.engine.pause()
        await trio.sleep(148)
        ex.engine.resume()
        await trio.sleep(44)  # 49 s of running time
        assert (ex.engine.bursts, ex.engine.bursting) == (0, False)
        await trio.sleep(2)  # 51 s
        assert (ex.engine.bursts, ex.engine.bursting) == (1, True)
        await trio.sleep(10)
        assert (ex.engine.bursts, ex.engine.bursting) == (1, False)
        await trio.sleep(40)  # 101 s: the second, 50 s after the first
        assert (ex.engine.bursts, ex.engine.bursting) == (2, True)


def test_the_ticker_index_is_built_with_the_engine_and_agrees_with_the_markets() -> None:
    # Settling a market looks it up by ticker; at 250 000 markets building that index took
    # 2.7-4.5 s inside the first lifecycle churn, a stall every connection saw. The engine
    # builds it up front, from the tickers alone.
    universe = Universe(5_000, PINNED_START_US, seed=3)
    Engine(universe, Truth(universe), rate=1.0, active=10, seed=3, clock=lambda: PINNED_START_US)
    assert universe._by_ticker is not None and len(universe._by_ticker) == 5_000
    for i in range(0, 5_000, 7):
        info = universe.info(i)
        assert universe.ticker(i) == info.ticker
        assert universe.index_of(info.ticker) == i
    assert universe.index_of("KXNOPE-26JAN01-T1") is None


async def test_a_batch_of_ticks_keeps_each_ticks_own_time(autojump_clock: object) -> None:
    """The engine wakes every 50 ms (``BATCH``) and generates the five 10 ms ticks due
    (issue 20: one wake-up and one write per connection for five ticks): each tick's
    messages still carry its own time, so the exchange times fill every 10 ms of the run
    as when it woke every tick, and an engine on time is not late."""
    base = PINNED_START_US

    def clock() -> int:
        return base + int(trio.current_time() * 1e6)

    async with sim(markets=100, active=20, seed=6, rate=2000.0, clock=clock) as ex:
        start_ms = clock() // 1000
        await trio.sleep(10)
        ex.engine.pause()
        assert ex.engine.late_s == 0.0
        times = [e.ts_us // 1000 - start_ms for e in ex.truth.events]
    assert times == sorted(times)
    ticks = {t // 10 for t in times}
    assert len(ticks) >= 980, len(ticks)  # of the 1 000 ticks in 10 s (compressed: ~400)
    assert 18_000 <= len(times) <= 22_000, len(times)
