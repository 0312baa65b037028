"""Every reply to a command we send is matched by id and acted on (kalshi-api.md §2.2, §2.3),
against the simulator on virtual time: error 27 pauses and resends, error 26 finds the
subscription's cap and moves markets to another connection (or records them refused), a
command without a reply ends the session, and the older ``subscribed`` shape (no msg, no
sid) is resolved with ``list_subscriptions``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from kalshi.gather.commands import Refusals
from kalshi.gather.connection import Connection
from kalshi.gather.layout import Layout
from kalshi.models.rows import GapRow
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US
from tests.gather.test_liveness import collecting_context, wait_state


def sim_subscription(sim: Any, channel: str) -> set[str]:
    """The markets the simulator's sessions carry on ``channel`` (all sessions)."""
    tickers: set[str] = set()
    for session in sim.sessions:
        for sub in session.subs.values():
            if sub.channel == channel:
                tickers |= sub.tickers or set()
    return tickers


def exchange(**options: Any) -> Any:
    return open_sim_exchange(
        markets=20, active=8, rate=20.0, seed=5, port=0, start_us=PINNED_START_US, **options
    )


async def settle(conn: Connection, want: int) -> None:
    while len(conn.subscribed) + len(conn.refused) < want:  # noqa: ASYNC110
        await trio.sleep(0.05)


async def test_error_27_pauses_and_resends_until_every_market_is_on(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with exchange(command_rate=1.0) as sim, trio.open_nursery() as nursery:
        ctx, rows = collecting_context(
            sim,
            tmp_path,
            nursery,
            **{"websocket.markets_per_command": 1, "websocket.reconnect_backoff": "1s"},
        )
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        tickers = sim.engine.active_tickers[:4]
        conn.add(tickers)
        nursery.start_soon(conn.run)
        with trio.fail_after(120):
            await settle(conn, 4)
        assert conn.subscribed == set(tickers) == sim_subscription(sim, "orderbook_delta")
        assert (conn.refused, conn.sessions, rows["gaps"]) == ({}, 1, [])
        nursery.cancel_scope.cancel()


async def test_error_26_finds_the_cap_and_records_what_no_connection_takes(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with exchange(market_cap=2) as sim, trio.open_nursery() as nursery:
        ctx, rows = collecting_context(sim, tmp_path, nursery, **{"websocket.refusal_retry": "5s"})
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        tickers = sorted(sim.engine.active_tickers[:4])
        conn.add(tickers)
        nursery.start_soon(conn.run)
        with trio.fail_after(120):
            await settle(conn, 4)
        await trio.testing.wait_all_tasks_blocked()
        assert conn.subscribed == set(tickers[:2]) == sim_subscription(sim, "orderbook_delta")
        assert conn.refused == {tickers[2]: 26, tickers[3]: 26}
        gaps = rows["gaps"]
        assert all(isinstance(g, GapRow) for g in gaps)
        assert [(g.kind, g.ticker, g.end_ts) for g in gaps] == [
            ("subscription_refused", tickers[2], None),
            ("subscription_refused", tickers[3], None),
        ]
        assert gaps[0].detail == (
            "orderbook-0: orderbook_delta refused: 26 Subscription market limit exceeded"
        )
        assert ctx.gaps == {"subscription_refused": 2}
        errors = ctx.processor.counts["error_reply"]
        for _ in range(60):  # six retries over 30 s, each refused again: refused throughout
            await trio.sleep(0.5)
            assert conn.refused == {tickers[2]: 26, tickers[3]: 26}
        assert ctx.processor.counts["error_reply"] == errors + 6  # one add each time
        assert (len(rows["gaps"]), conn.sessions) == (2, 1)
        nursery.cancel_scope.cancel()


async def test_a_refusal_episode_is_one_warning_with_exact_counts(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue F6: finding a cap of 100 with batches of 250 logged one warning per refused
    command (294 here). Now each refusal is at debug and the episode one warning."""
    caplog.set_level(logging.DEBUG, logger="kalshi.gather.connection")
    async with exchange(market_cap=100) as sim, trio.open_nursery() as nursery:
        ctx, rows = collecting_context(
            sim, tmp_path, nursery, **{"websocket.markets_per_command": 250}
        )
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        conn.add([f"KXCAP-{i:03d}" for i in range(600)])
        nursery.start_soon(conn.run)
        with trio.fail_after(120):
            await settle(conn, 600)
        await trio.testing.wait_all_tasks_blocked()
        assert (len(conn.subscribed), len(conn.refused), len(rows["gaps"])) == (100, 500, 500)
        mine = [r for r in caplog.records if r.name == "kalshi.gather.connection"]
        refusals = [
            r for r in mine if r.levelno == logging.DEBUG and "refused: 26" in r.msg % r.args
        ]
        assert len(refusals) == ctx.processor.counts["error_reply"] == 294
        why = "26 Subscription market limit exceeded"
        assert [r.getMessage() for r in mine if r.levelno >= logging.WARNING] == [
            f"orderbook-0: 294 command(s) refused in 14.9 s (add_markets {why}: 292,"
            f" subscribe {why}: 2), naming 2838 market(s); 0 moved to another connection,"
            " 500 recorded refused; now 100 subscribed, 500 refused"
        ]
        nursery.cancel_scope.cancel()


async def test_error_26_moves_markets_to_a_connection_with_room(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with exchange(market_cap=3) as sim, trio.open_nursery() as nursery:
        ctx, rows = collecting_context(
            sim,
            tmp_path,
            nursery,
            **{
                "websocket.orderbook_connections": 3,
                "websocket.ticker_connections": 0,
                "websocket.lifecycle_connections": 0,
            },
        )
        layout = Layout(ctx, sharded=False)
        layout.connections = [c for c in layout.connections if c.channel == "orderbook_delta"]
        for conn in layout.connections:
            nursery.start_soon(conn.run)
        tickers = sorted(sim.engine.active_tickers[:7])
        layout.on_markets(tickers, [])  # 3, 2, 2 by count: fits
        pool = layout.pools["orderbook_delta"]
        first = layout.connections[0]
        extra = [f"KXEXTRA-{i}" for i in range(2)]  # an uneven layout: first wants 5 > 3
        for ticker in extra:
            pool.owner[ticker] = first
        first.add(extra)
        with trio.fail_after(120):
            while sum(len(c.subscribed) for c in layout.connections) < 9:  # noqa: ASYNC110
                await trio.sleep(0.05)
        on = [c.subscribed for c in layout.connections]
        assert set().union(*on) == {*tickers, *extra} == sim_subscription(sim, "orderbook_delta")
        assert [len(s) for s in on] == [3, 3, 3]
        assert first.full is True
        assert [c.refused for c in layout.connections] == [{}, {}, {}]
        assert rows["gaps"] == []
        nursery.cancel_scope.cancel()


async def test_a_command_without_a_reply_ends_the_session(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with exchange() as sim, trio.open_nursery() as nursery:
        ctx, _ = collecting_context(
            sim,
            tmp_path,
            nursery,
            **{"websocket.command_timeout": "10s", "websocket.reconnect_backoff": "1s"},
        )
        conn = Connection(ctx, "trade-0", "trade", scoped=False)
        sim.faults.unanswered(15)
        start = trio.current_time()
        nursery.start_soon(conn.run)
        while conn.reconnects == 0:  # noqa: ASYNC110
            await trio.sleep(0.01)
        assert 10.1 <= trio.current_time() - start <= 10.11  # one more poll (0.1 s) past it
        assert conn.last_error == "no reply to subscribe (id 1) within 10s"
        await wait_state(conn, "live")  # the fault is over by the third session
        assert conn.sid is not None
        assert sim.truth.faults_injected["unanswered"] == 2
        nursery.cancel_scope.cancel()


async def test_a_reply_that_arrives_as_the_command_timeout_falls_is_matched(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The exchange holds its data frames (pings still flow) for exactly the command
    timeout, so the reply to ``subscribe``, sent at ``start``, comes out as its deadline
    ``start + 10`` falls, in the batch that wakes the keepalive: a reply that reached the
    socket by the deadline is not lost (the scale test on a starved 2-core machine)."""
    async with exchange() as sim, trio.open_nursery() as nursery:
        ctx, _ = collecting_context(
            sim,
            tmp_path,
            nursery,
            **{"websocket.command_timeout": "10s", "websocket.reconnect_backoff": "1s"},
        )
        conn = Connection(ctx, "trade-0", "trade", scoped=False)
        start = trio.current_time()
        nursery.start_soon(conn.run)
        for _ in range(10_000):  # no virtual time passes: the subscribe goes out at start
            if len(conn._inflight):
                break
            await trio.lowlevel.checkpoint()
        assert (len(conn._inflight), trio.current_time()) == (1, start)
        assert sim.faults.delay(10.0) == 1  # until start + 10: the deadline, to the bit
        await wait_state(conn, "live")
        assert 10.0 <= trio.current_time() - start <= 10.01  # the reply came at start + 10
        await trio.sleep(30)
        assert (conn.sessions, conn.reconnects, conn.state, conn.last_error) == (1, 0, "live", "")
        nursery.cancel_scope.cancel()


async def test_the_older_subscribed_shape_is_resolved_by_list_subscriptions(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with exchange() as sim, trio.open_nursery() as nursery:
        ctx, rows = collecting_context(sim, tmp_path, nursery)
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        conn.add(sim.engine.active_tickers[:2])
        sim.faults.bare_subscribed(3600)
        nursery.start_soon(conn.run)
        with trio.fail_after(30):
            await wait_state(conn, "live")
        assert conn.sid == 1
        assert ctx.processor.subscription(conn.conn_id, 1) == "orderbook_delta"
        sim.faults.skip_seq(2)  # seq checking is on: the gap is seen
        with trio.fail_after(30):
            while not rows["gaps"]:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert [g.kind for g in rows["gaps"]] == ["seq_gap"]  # type: ignore[union-attr]
        assert sim.truth.faults_injected["bare_subscribed"] == 1
        nursery.cancel_scope.cancel()


async def test_markets_no_subscription_takes_are_gaps_and_degrade_health(
    db_url: str, tmp_path: Path
) -> None:
    from kalshi.auth import Signer, load_private_key
    from kalshi.gather.service import Gatherer
    from kalshi.store import connect_db
    from tests.gather.support import sim_config, wait_for

    async with exchange(market_cap=3) as sim:
        sim.engine.pause()
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        cfg = sim_config(sim, tmp_path, db_url, **{"websocket.orderbook_connections": 2})
        gatherer = Gatherer(cfg, db_url, signer=signer)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                layout = gatherer.layout
                assert layout is not None
                books = [c for c in layout.connections if c.channel == "orderbook_delta"]
                live = len(gatherer.registry.live)
                await wait_for(
                    lambda: sum(len(c.subscribed) + len(c.refused) for c in books) == live
                )
                health = gatherer.health()
                await trio.sleep(0.5)  # the gap rows reach their writer
                nursery.cancel_scope.cancel()
        on_exchange = sim_subscription(sim, "orderbook_delta")
    refused = {t for c in books for t in c.refused}
    assert live > 6
    assert [len(c.subscribed) for c in books] == [3, 3]
    assert len(refused) == live - 6 and not refused & on_exchange
    assert health["status"] == "degraded"
    assert sorted(c["refused"] for c in health["connections"] if c["refused"]) == sorted(
        len(c.refused) for c in books if c.refused
    )
    with connect_db(db_url) as db:
        gaps = db.query("SELECT ticker FROM gaps WHERE kind = 'subscription_refused'")
    assert sorted(t for (t,) in gaps) == sorted(refused)


async def test_a_refused_whole_exchange_subscribe_waits_before_asking_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with exchange() as sim, trio.open_nursery() as nursery:
        ctx, _ = collecting_context(sim, tmp_path, nursery, **{"websocket.refusal_retry": "60s"})
        conn = Connection(ctx, "multivariate-0", "multivariate", scoped=False)  # error 8
        nursery.start_soon(conn.run)
        await trio.sleep(100)
        assert ctx.processor.counts["error_reply"] == 2  # at 0 s and 60 s, not a loop
        assert (conn.state, conn.sid, conn.sessions) == ("subscribing", None, 1)
        assert conn.last_error == "subscribe refused: 8 Unknown channel name"
        nursery.cancel_scope.cancel()


def test_a_refusal_episode_without_a_command_says_the_subscription_is_full() -> None:
    """Markets given up without asking (the subscription took no more): one line too."""
    episode = Refusals(10.0, gaps=3)
    assert episode.summary("orderbook-0", 10.5, 100, 3) == (
        "orderbook-0: 0 command(s) refused in 0.5 s (the subscription is full), naming 0"
        " market(s); 0 moved to another connection, 3 recorded refused; now 100 subscribed,"
        " 3 refused"
    )
