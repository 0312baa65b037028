"""Every paginator stops with one clear error when the exchange repeats a cursor (or the
pages pass the cap), instead of looping: unit, REST client against the simulator's
``stuck_cursor`` fault, and the gatherer's listing and trade backfill."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from kalshi.auth import Signer, load_private_key
from kalshi.errors import PaginationError
from kalshi.gather.registry import MarketRegistry
from kalshi.gather.rest_tasks import backfill_trades, relist_forever
from kalshi.net import RestClient
from kalshi.net.rest import Pages
from kalshi.sim import open_sim_exchange
from kalshi.sim.rest import _cursor
from kalshi.testing import PINNED_START_US
from kalshi.testing.memory import memory_transport
from tests.gather.test_connection_timing import context
from tests.gather.test_liveness import collecting_sink


def test_pages_end_on_an_empty_cursor_and_stop_on_a_repeat() -> None:
    pages = Pages("/markets")
    assert [pages.advance("a"), pages.advance("b"), pages.advance("")] == [True, True, False]
    assert Pages("/x").advance(None) is False
    looping = Pages("/markets")
    assert looping.advance("a") is True
    assert looping.advance("b") is True
    with pytest.raises(PaginationError) as caught:
        looping.advance("a")
    assert str(caught.value) == (
        "GET /markets: page 3 repeated the cursor 'a' of an earlier page; stopped instead of "
        "looping"
    )
    capped = Pages("/markets/trades", max_pages=3)
    assert [capped.advance("1"), capped.advance("2")] == [True, True]
    with pytest.raises(PaginationError, match=r"^GET /markets/trades: more than 3 pages;"):
        capped.advance("3")


async def test_a_stuck_cursor_is_one_error_not_a_loop(mock_clock: object) -> None:
    async with open_sim_exchange(
        markets=2500, active=2, rate=5.0, seed=4, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        sim.faults.stuck_cursor(3600)
        async with RestClient(sim.rest_url, signer, rate=1000) as rest:
            listed: list[str] = []
            with pytest.raises(PaginationError, match=r"^GET /markets: page 2 repeated"):
                async for page in rest.market_pages():
                    listed += [m.ticker for m in page]
            assert (rest.requests, len(listed), len(set(listed))) == (2, 2000, 2000)
            assert sim.truth.faults_injected["stuck_cursor"] == 2


async def test_the_gatherer_starts_with_what_it_listed_and_logs_one_error(
    autojump_clock: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_sim_exchange(
            markets=2500, active=2, rate=5.0, seed=4, port=0, start_us=PINNED_START_US
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()
        sink, rows = collecting_sink(nursery)
        ctx = context(sim, tmp_path, None, sink, **{"relist_interval": "300s"})
        registry = MarketRegistry("t1")
        sim.faults.stuck_cursor(3600)
        async with RestClient(
            sim.rest_url, ctx.signer, rate=1000, transport=memory_transport(sim)
        ) as rest:
            with trio.fail_after(60):
                listed = await nursery.start(relist_forever, ctx, rest, registry)
            # status=unopened: one empty page; status=open: two, the second repeating
            assert (listed, len(registry.markets), rest.requests) == (2000, 2000, 3)
            await trio.testing.wait_all_tasks_blocked()
            assert len(rows["markets"]) == 2000
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert errors == [
                "market listing stopped early: GET /markets: page 2 repeated the cursor "
                f"{_cursor('m', 1000)!r} of an earlier page; stopped instead of looping"
            ]
            nursery.cancel_scope.cancel()


async def test_a_backfill_whose_pages_loop_keeps_its_trades_and_writes_a_gap(
    mock_clock: object, tmp_path: Path
) -> None:
    async with (
        open_sim_exchange(
            markets=40, active=10, rate=50.0, seed=6, port=0, start_us=PINNED_START_US
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()
        while len(sim.truth.trades) < 2500:
            sim.engine.step(200)
        sink, rows = collecting_sink(nursery)
        ctx = context(sim, tmp_path, None, sink)
        sim.faults.stuck_cursor(3600)
        send, windows = trio.open_memory_channel[tuple[int, int, object]](1)
        start = min(t.exchange_ts for t in sim.truth.trades)
        end = max(t.exchange_ts for t in sim.truth.trades)
        async with RestClient(sim.rest_url, ctx.signer, rate=1000) as rest:
            async with send:
                await send.send((start, end, "window"))
            await backfill_trades(ctx, rest, MarketRegistry("t1"), windows)
        await trio.testing.wait_all_tasks_blocked()
        newest = {t.trade_id for t in sim.truth.trades[-2000:]}  # REST: newest first
        assert len(rows["trades"]) == 2000  # two pages: the first, then its repeat
        assert {r[4] for r in rows["trades"]} == newest
        gaps = rows["gaps"]
        # open: the trades after the repeat are still due (a later start fetches them)
        assert [(g[0], g[1], g[6]) for g in gaps] == [(start, None, "backfill")]
        assert gaps[0][9].startswith(
            "trade backfill stopped early: GET /markets/trades: page 2 repeated the cursor"
        )
        nursery.cancel_scope.cancel()
