"""Liveness and close codes against the simulator, on virtual time, on every transport.

The exchange answers a client ping with an *empty* pong (kalshi-api.md §2.5), and the
simulator does too; any inbound byte proves a connection alive. A permanent close code
(RFC 6455 §7.4: 1002, 1003, 1007-1010, 4000-4999) stops the connection instead of churning.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from kalshi.gather.connection import Connection
from kalshi.gather.context import GatherContext, RowSink
from kalshi.models.rows import TABLE_COLUMNS, Row
from kalshi.sim import SimExchange, open_sim_exchange
from kalshi.testing import PINNED_START_US
from kalshi.testing.memory import OVER_STREAM, memory_connector
from tests.gather.test_connection_timing import context

TRANSPORTS = sorted(OVER_STREAM)


def collecting_sink(nursery: trio.Nursery) -> tuple[RowSink, dict[str, list[Row]]]:
    """A sink whose rows land in lists, one per table."""
    rows: dict[str, list[Row]] = {table: [] for table in TABLE_COLUMNS}
    channels = {}

    async def collect(table: str, receive: trio.MemoryReceiveChannel[Row]) -> None:
        async for row in receive:
            rows[table].append(row)

    for table in TABLE_COLUMNS:
        send, receive = trio.open_memory_channel[Row](10_000)
        channels[table] = send
        nursery.start_soon(collect, table, receive)
    return RowSink(channels), rows


def collecting_context(
    sim: Any,
    tmp_path: Path,
    nursery: trio.Nursery,
    connector: Any = None,
    **overrides: Any,
) -> tuple[GatherContext, dict[str, list[Row]]]:
    """A one-connection context (:func:`context`) over ``connector`` (the simulator's
    in-memory one by default) whose rows land in lists, one per table (:func:`collecting_sink`)."""
    sink, rows = collecting_sink(nursery)
    return context(sim, tmp_path, connector or memory_connector(sim), sink, **overrides), rows


async def wait_state(conn: Connection, state: str) -> None:
    while conn.state != state:  # noqa: ASYNC110 - state of the task under test
        await trio.sleep(0.01)


def small_exchange(active: int, rate: float) -> AbstractAsyncContextManager[SimExchange]:
    """The simulator of these tests: 10 markets, ``active`` of them trading at ``rate``
    messages a second, seed 3, the pinned start."""
    return open_sim_exchange(
        markets=10, active=active, rate=rate, seed=3, port=0, start_us=PINNED_START_US
    )


async def live_lifecycle(nursery: trio.Nursery, ctx: GatherContext) -> Connection:
    """The ``market_lifecycle_v2`` connection of ``ctx``, run in ``nursery``, once live."""
    conn = Connection(ctx, "lifecycle-0", "market_lifecycle_v2", scoped=False)
    nursery.start_soon(conn.run)
    await wait_state(conn, "live")
    return conn


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_quiet_connection_with_empty_pongs_stays_up(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, transport: str
) -> None:
    async with (
        small_exchange(active=0, rate=0.0) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()  # nothing but pings and pongs: lifecycle on a quiet exchange
        ctx, rows = collecting_context(
            sim,
            tmp_path,
            nursery,
            memory_connector(sim, transport),
            **{"websocket.silence_timeout": "5s", "websocket.ping_interval": "2s"},
        )
        conn = await live_lifecycle(nursery, ctx)
        await trio.sleep(60)
        assert (conn.sessions, conn.reconnects, conn.state, conn.last_error) == (1, 0, "live", "")
        assert rows["gaps"] == []
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("code", "stops"), [(1008, True), (4003, True), (1001, False)])
async def test_a_permanent_close_code_stops_the_connection(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    transport: str,
    code: int,
    stops: bool,
) -> None:
    async with (
        small_exchange(active=2, rate=5.0) as sim,
        trio.open_nursery() as nursery,
    ):
        ctx, rows = collecting_context(
            sim,
            tmp_path,
            nursery,
            memory_connector(sim, transport),
            **{"websocket.reconnect_backoff": "1s"},
        )
        conn = await live_lifecycle(nursery, ctx)
        assert sim.faults.drop_connections(code=code) == 1
        await trio.sleep(30)
        if stops:
            assert (conn.sessions, conn.reconnects, conn.state) == (1, 0, "stopped")
            assert conn.last_error.startswith("stopped after a permanent close: closed by peer: ")
            assert str(code) in conn.last_error
            gaps = rows["gaps"]  # one open gap from the last frame on, no reconnect
            assert [(g[6], g[1]) for g in gaps] == [("stopped", None)]
            assert gaps[0][9] == f"lifecycle-0: {conn.last_error}"
        else:
            assert (conn.sessions, conn.reconnects, conn.state) == (2, 1, "live")
            assert [row[6] for row in rows["gaps"]] == ["reconnect"]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_pong_that_arrives_as_the_silence_deadline_falls_keeps_the_connection(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, transport: str
) -> None:
    """Bytes that reached the socket by the time the keepalive wakes at its deadline are
    heard, however the run loop orders the tasks it woke: a starved gatherer (a 2-core
    machine shared with the exchange, PostgreSQL and the deduplicator: the scale test's
    lifecycle connections, silent for 5s while pongs waited unread) wakes its keepalive
    and its reader in one batch. Here the exchange holds everything from the connection's
    last bytes (time ``t0``) for exactly the silence timeout, so the pong to the ping at
    ``t0 + 2.5`` comes out as the deadline ``t0 + 5`` falls, in the same batch."""
    async with (
        small_exchange(active=0, rate=0.0) as sim,
        trio.open_nursery() as nursery,
    ):
        sim.engine.pause()
        ctx, rows = collecting_context(
            sim,
            tmp_path,
            nursery,
            memory_connector(sim, transport),
            **{"websocket.silence_timeout": "5s", "websocket.ping_interval": "2.5s"},
        )
        conn = Connection(ctx, "lifecycle-0", "market_lifecycle_v2", scoped=False)
        t0 = trio.current_time()
        nursery.start_soon(conn.run)
        for _ in range(10_000):  # no virtual time passes: every byte so far came at t0
            if conn.state == "live":
                break
            await trio.lowlevel.checkpoint()
        assert (conn.state, trio.current_time()) == ("live", t0)
        assert sim.faults.go_silent(5.0) == 1  # until t0 + 5: the deadline, to the bit
        await trio.sleep(30)
        assert (conn.sessions, conn.reconnects, conn.state, conn.last_error) == (1, 0, "live", "")
        assert rows["gaps"] == []
        nursery.cancel_scope.cancel()
