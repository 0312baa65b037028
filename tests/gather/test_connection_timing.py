"""Connection timing on virtual time: silence detection and the reconnect schedule.

The simulator is reached over in-memory streams (kalshi.testing.memory), so
``autojump_clock`` drives every timer exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing

from kalshi.auth import Signer, load_private_key
from kalshi.gather.connection import Connection
from kalshi.gather.context import GatherContext, RowSink
from kalshi.journal import JournalRecord, JournalWriter, read_journal
from kalshi.models.rows import TABLE_COLUMNS, Row
from kalshi.net import system_wall_us
from kalshi.pipeline import FrameProcessor
from kalshi.sim import SimExchange, open_sim_exchange
from kalshi.testing import PINNED_START_US
from kalshi.testing.memory import memory_connector
from tests.gather.support import sim_config
from tests.journal.journal_support import journal_config


async def drain(receive: trio.MemoryReceiveChannel[Row]) -> None:
    async for _ in receive:
        pass


def virtual_wall_us() -> int:
    """Wall time that moves with the virtual clock, for both sides (µs since the epoch)."""
    return PINNED_START_US + int(trio.current_time() * 1e6)


def sim_exchange(rate: float = 50.0, **options: Any) -> AbstractAsyncContextManager[SimExchange]:
    """The simulator these tests run against: 10 markets, 4 active, seed 2, pinned start."""
    return open_sim_exchange(
        markets=10, active=4, rate=rate, seed=2, port=0, start_us=PINNED_START_US, **options
    )


class Behind:
    """A writer behind: takes no row until :attr:`room` is set, then keeps each in
    :attr:`rows` (``row_sink(..., consume=behind.consume)``)."""

    def __init__(self) -> None:
        self.room = trio.Event()
        self.rows: list[Row] = []

    async def consume(self, receive: trio.MemoryReceiveChannel[Row]) -> None:
        await self.room.wait()
        async for row in receive:
            self.rows.append(row)


def row_sink(
    nursery: trio.Nursery,
    held: str | None = None,
    consume: Callable[[trio.MemoryReceiveChannel[Row]], Awaitable[None]] | None = None,
) -> RowSink:
    """A queue of 10 000 rows a table, each drained in ``nursery``; the ``held`` table's
    queue holds one row and is read by ``consume`` instead (a writer behind)."""
    channels = {}
    for table in TABLE_COLUMNS:
        send, receive = trio.open_memory_channel[Row](1 if table == held else 10_000)
        channels[table] = send
        nursery.start_soon(consume if table == held and consume else drain, receive)
    return RowSink(channels)


def context(
    sim: Any, tmp_path: Path, connector: Any, sink: RowSink, **overrides: str
) -> GatherContext:
    """A gatherer context for one connection: the simulator's key, no journal."""
    return GatherContext(
        cfg=sim_config(sim, tmp_path, "postgresql://unused", **overrides),
        signer=Signer(sim.key_id, load_private_key(sim.private_key_pem.decode())),
        connector=connector,
        processor=FrameProcessor("t1"),
        journal=None,
        sink=sink,
        wall_us=system_wall_us,  # signatures must match the sim's clock
    )


def read_ahead_ticker(
    sim: Any, tmp_path: Path, sink: RowSink, journal: JournalWriter | None = None
) -> Connection:
    """The whole-exchange ``ticker`` connection with a read-ahead of 64 MiB, on the
    virtual clock, through the lockstep in-memory connector (silence timeout 5 s, pings
    every 1 s); ``journal``: where it journals (none by default)."""
    ctx = context(
        sim,
        tmp_path,
        memory_connector(sim, lockstep=True),
        sink,
        **{
            "websocket.silence_timeout": "5s",
            "websocket.ping_interval": "1s",
            "websocket.read_ahead_bytes": "64MiB",
        },
    )
    ctx.wall_us = virtual_wall_us
    ctx.journal = journal
    return Connection(ctx, "ticker-0", "ticker", scoped=False)


def watched(sim: Any, tmp_path: Path, sink: RowSink) -> GatherContext:
    """:func:`context` through the in-memory connector, silent after 5 s, pinging every 1 s."""
    return context(
        sim,
        tmp_path,
        memory_connector(sim),
        sink,
        **{"websocket.silence_timeout": "5s", "websocket.ping_interval": "1s"},
    )


async def start_live(nursery: trio.Nursery, conn: Connection) -> None:
    """Run ``conn`` in ``nursery``; return once it is live."""
    nursery.start_soon(conn.run)
    while conn.state != "live":  # noqa: ASYNC110 - state of the task under test
        await trio.sleep(0.01)


async def test_a_silent_socket_is_replaced_within_the_silence_timeout(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with (
        sim_exchange() as sim,
        trio.open_nursery() as nursery,
    ):
        ctx = watched(sim, tmp_path, row_sink(nursery))
        conn = Connection(ctx, "ticker-0", "ticker", scoped=False)
        await start_live(nursery, conn)
        await trio.sleep(3)
        assert (conn.sessions, conn.reconnects) == (1, 0)
        silent_at = trio.current_time()
        sim.faults.go_silent(60)
        while conn.reconnects == 0:  # noqa: ASYNC110
            await trio.sleep(0.01)
        detected = trio.current_time() - silent_at
        # the last frame or pong came at most one ping interval before the silence; the
        # verdict comes one more poll (0.1 s) past the deadline
        assert 4.0 + 0.1 <= detected <= 5.0 + 0.1 + 0.02, detected
        assert "silent for 5s" in conn.last_error
        nursery.cancel_scope.cancel()


async def test_reconnects_back_off_exponentially_while_refused(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with sim_exchange() as sim:
        sim.faults.refuse_connections(1000)
        attempts: list[float] = []
        connector = memory_connector(sim)

        def counting(url: str, headers: object, max_frame_bytes: int) -> object:
            attempts.append(trio.current_time())
            return connector(url, headers, max_frame_bytes)  # type: ignore[arg-type]

        ctx = context(
            sim,
            tmp_path,
            counting,
            RowSink({}),
            **{"websocket.reconnect_backoff": "1s", "websocket.max_reconnect_backoff": "8s"},
        )
        conn = Connection(ctx, "lifecycle-0", "market_lifecycle_v2", scoped=False)
        with trio.move_on_after(60):
            await conn.run()
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        caps = [1, 2, 4, 8, 8, 8, 8]
        assert len(gaps) >= len(caps)
        for gap, cap in zip(gaps, caps, strict=False):
            assert cap / 2 <= gap <= cap + 0.01, (gaps, caps)


async def test_a_stall_of_our_own_loop_is_not_the_peer_going_silent(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """8 s pass without this process running a task (CPU starved, a long GC: issue 20 at
    full scale): frames wait in the socket, the peer was never silent, so no reconnect."""
    async with (
        sim_exchange() as sim,
        trio.open_nursery() as nursery,
    ):
        ctx = watched(sim, tmp_path, row_sink(nursery))
        conn = Connection(ctx, "ticker-0", "ticker", scoped=False)
        await start_live(nursery, conn)
        await trio.sleep(3)
        messages = conn.messages
        autojump_clock.jump(8)  # no task ran meanwhile: a stall of the whole process
        await trio.sleep(3)
        assert conn.messages > messages
        assert (conn.sessions, conn.reconnects) == (1, 0), conn.last_error
        nursery.cancel_scope.cancel()


async def test_our_own_backpressure_is_neither_silence_nor_a_lost_reply(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The database falls behind (issue 20 at 20 000 msgs/s offered: "silent for 5s" and
    "no reply to add_markets within 10s" on connections that were fine): the deltas'
    queue is full, so the receive loop waits for room and the socket is not read for 30 s.
    No frame, ping or pong is seen, and the reply to a command sent meanwhile waits behind
    the data. Neither is the exchange's doing: no reconnect, and the reply is matched once
    there is room."""
    async with (
        sim_exchange() as sim,
        trio.open_nursery() as nursery,
    ):
        room = trio.Event()

        async def drain_later(receive: trio.MemoryReceiveChannel[Row]) -> None:
            await room.wait()
            await drain(receive)

        ctx = context(
            sim,
            tmp_path,
            memory_connector(sim),
            row_sink(nursery, "orderbook_deltas", drain_later),
            **{
                "websocket.silence_timeout": "5s",
                "websocket.ping_interval": "1s",
                "websocket.command_timeout": "10s",
            },
        )
        tickers = sim.engine.active_tickers
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        conn.add(tickers[:2])
        nursery.start_soon(conn.run)
        while not conn.blocked:  # noqa: ASYNC110 - state of the task under test
            await trio.sleep(0.01)
        conn.add(tickers[2:])  # add_markets goes out; its reply queues behind the data
        while not len(conn._inflight):  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.sleep(30)
        assert conn.blocked
        room.set()
        while len(conn._inflight):  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.sleep(3)
        assert (conn.sessions, conn.reconnects) == (1, 0), conn.last_error
        assert conn.state == "live" and not conn.blocked
        (session,) = sim.sessions
        (sub,) = session.subs.values()
        assert sub.tickers == set(tickers)
        nursery.cancel_scope.cancel()


async def test_a_session_lost_while_reading_a_backlog_backfills_from_where_reading_was(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The trades' queue is full for 30 s (the database behind), so the exchange's buffer for
    the whole-exchange trade subscription overflows: error 25, at the back of what it had
    queued (issue 20 at 20 000 msgs/s: 180 550 trades lost). The session's end is read 30 s
    after the last trade it carried was made; the backfill must start at that trade, not
    at the moment the error was read."""

    received: set[str] = set()
    trade_id = TABLE_COLUMNS["trades"].index("trade_id")
    async with (
        sim_exchange(rate=200.0, clock=virtual_wall_us, buffer_limit=20_000) as sim,
        trio.open_nursery() as nursery,
    ):
        room = trio.Event()

        async def collect(receive: trio.MemoryReceiveChannel[Row]) -> None:
            await room.wait()
            async for row in receive:
                received.add(str(row[trade_id]))

        backfill_send, backfill = trio.open_memory_channel[Any](10)
        ctx = context(
            sim,
            tmp_path,
            memory_connector(sim, lockstep=True),
            row_sink(nursery, "trades", collect),
            # one frame read ahead: the reader soon waits too, and the exchange's buffer fills
            **{"websocket.read_ahead_bytes": 1},
        )
        ctx.wall_us = virtual_wall_us
        ctx.backfill = backfill_send
        conn = Connection(ctx, "trade-0", "trade", scoped=False)
        nursery.start_soon(conn.run)
        while not conn.blocked:  # noqa: ASYNC110 - state of the task under test
            await trio.sleep(0.01)
        await trio.sleep(30)
        assert sim.truth.undelivered["overflow"] >= 1  # the exchange dropped the subscription
        room.set()
        since, until, _ = await backfill.receive()
        missed = [t for t in sim.truth.trades if t.trade_id not in received]
        assert missed and conn.reconnects == 1, conn.last_error
        first_missed = min(t.exchange_ts for t in missed if t.exchange_ts < until)
        assert since <= first_missed, (since, first_missed)
        assert first_missed - since < 2_000_000  # from where reading was, not much before
        nursery.cancel_scope.cancel()


async def test_waiting_to_handle_a_lifecycle_message_is_not_silence(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Handling a lifecycle message writes the market's row; with the markets' queue full
    that waits (issue 20 at 20 000 msgs/s: four lifecycle connections declared "silent for
    5s" together after 63 s unread). Our own wait, so no reconnect."""
    async with (
        sim_exchange() as sim,
        trio.open_nursery() as nursery,
    ):
        room = trio.Event()
        entered = trio.Event()
        handled = []

        async def on_lifecycle(out: Any) -> None:
            entered.set()
            await room.wait()
            handled.append(out)

        ctx = watched(sim, tmp_path, row_sink(nursery))
        ctx.on_lifecycle = on_lifecycle
        conn = Connection(ctx, "lifecycle-0", "market_lifecycle_v2", scoped=False)
        await start_live(nursery, conn)
        sim.engine.add_market(series="KXHIGHNY")
        await entered.wait()
        await trio.sleep(60)
        room.set()
        while not handled:  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.sleep(3)
        assert (conn.sessions, conn.reconnects) == (1, 0), conn.last_error
        nursery.cancel_scope.cancel()


async def test_a_reply_behind_a_backlog_read_slowly_is_not_lost(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The gatherer is far behind and starved of CPU (issue 20 at 20 000 msgs/s: "no reply
    to delete_markets within 10s" on order-book connections reading rows 70-100 s late,
    one frame every 0.4-10 s): each read takes 1.5 s, more than the keepalive's idea of
    "reading". The reply to a command waits behind that backlog; the rows read are late
    and older than the command, so it is not a lost reply. Matched once read: no
    reconnect."""

    fast = trio.Event()

    class SlowReads:
        """A WebSocket whose every read waits 1.5 s until ``fast`` (a loaded loop)."""

        def __init__(self, ws: Any) -> None:
            self._ws = ws

        def __getattr__(self, name: str) -> Any:
            return getattr(self._ws, name)

        def ready(self) -> None:
            return None  # every read goes through the slow receive

        async def receive(self) -> bytes | str:
            if not fast.is_set():
                with trio.move_on_after(1.5):
                    await fast.wait()
            return await self._ws.receive()

    async with (
        sim_exchange(clock=virtual_wall_us) as sim,
        trio.open_nursery() as nursery,
    ):
        inner = memory_connector(sim)

        @asynccontextmanager
        async def slow(url: str, headers: Any, max_frame_bytes: int) -> AsyncIterator[Any]:
            async with inner(url, headers, max_frame_bytes) as ws:
                yield SlowReads(ws)

        ctx = context(
            sim,
            tmp_path,
            slow,
            row_sink(nursery),
            **{
                "websocket.silence_timeout": "5s",
                "websocket.ping_interval": "1s",
                "websocket.command_timeout": "10s",
            },
        )
        ctx.wall_us = virtual_wall_us
        tickers = sim.engine.active_tickers
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        conn.add(tickers[:2])
        nursery.start_soon(conn.run)
        while conn._lag_us < 5_000_000:  # noqa: ASYNC110 - state of the task under test
            await trio.sleep(0.01)
        conn.add(tickers[2:])  # add_markets goes out; its reply queues behind the backlog
        while not len(conn._inflight):  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.sleep(40)
        assert conn.reconnects == 0, conn.last_error
        fast.set()
        while len(conn._inflight):  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.sleep(3)
        assert (conn.sessions, conn.reconnects) == (1, 0), conn.last_error
        (session,) = sim.sessions
        (sub,) = session.subs.values()
        assert sub.tickers == set(tickers)
        nursery.cancel_scope.cancel()


async def test_a_full_writer_queue_does_not_stop_a_whole_exchange_read(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The tickers' queue is full for 30 s (the database behind). The whole-exchange
    ``ticker`` connection reads on into its read-ahead (issue 20: with one loop it stopped
    reading, and the exchange's buffer for the subscription overflowed, error 25, 4 to 9
    times a run): the exchange's small buffer never overflows, nothing reconnects, and
    every frame read is handled once there is room."""

    behind = Behind()
    async with (
        sim_exchange(rate=200.0, clock=virtual_wall_us, buffer_limit=20_000) as sim,
        trio.open_nursery() as nursery,
    ):
        conn = read_ahead_ticker(sim, tmp_path, row_sink(nursery, "tickers", behind.consume))
        await start_live(nursery, conn)
        await trio.sleep(30)
        assert sim.truth.undelivered["overflow"] == 0
        assert conn.read_ahead > 100 and not conn.blocked
        behind.room.set()
        while conn.read_ahead:  # noqa: ASYNC110
            await trio.sleep(0.01)
        assert (conn.sessions, conn.reconnects) == (1, 0), conn.last_error
        assert len(behind.rows) >= conn.messages - 1  # every ticker frame read (but the reply)
        nursery.cancel_scope.cancel()


async def test_a_read_ahead_is_handled_in_turns_of_the_loop_not_frame_by_frame(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A whole-exchange connection's read-ahead is handled up to 256 KiB a turn of the
    event loop, as the one loop handles a socket read: issue 20, where a Trio channel
    between reader and handler cost one turn of the whole loop (~150 tasks) per frame, so
    at full scale the handling of the ``ticker`` fell to a few frames a second. The
    tickers' queue is full for 30 s; then it has room, and the backlog read ahead is
    handled within a few turns; nothing is lost, nothing reconnects."""

    async with (
        sim_exchange(rate=200.0, clock=virtual_wall_us, buffer_limit=20_000) as sim,
        trio.open_nursery() as nursery,
    ):
        behind = Behind()
        sink = row_sink(nursery, "tickers", behind.consume)
        conn = read_ahead_ticker(sim, tmp_path, sink)
        await start_live(nursery, conn)
        await trio.sleep(30)
        backlog = conn.read_ahead
        assert backlog > 1_000 and sim.truth.undelivered["overflow"] == 0
        roomy, rest = trio.open_memory_channel[Row](math.inf)
        sink.channels = {**sink.channels, "tickers": roomy}  # the writer caught up
        behind.room.set()
        turns = 0
        while conn.read_ahead:
            await trio.lowlevel.checkpoint()  # one turn of every runnable task
            turns += 1
        assert turns <= 10, (turns, backlog)  # one a frame before: >= backlog
        assert (conn.sessions, conn.reconnects) == (1, 0), conn.last_error
        handled = len(behind.rows) + rest.statistics().current_buffer_used
        assert handled == sink.rows["tickers"] >= conn.messages - 1  # all but the reply
        nursery.cancel_scope.cancel()


async def test_a_slow_journal_stops_the_handling_of_a_read_ahead_not_its_reading(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The journal's disk stalls for 30 s with a 20 000-byte bound on its memory. The
    whole-exchange ``ticker`` connection's reader goes on filling its read-ahead (issue
    20: it waited for the journal, ~20 s while the read-ahead drained, and the exchange's
    buffer overflowed, error 25); the handling, which journals, waits instead, so the
    journal holds at most the bound plus one frame. When the disk answers, every frame
    read is journaled once, in the order read, and its ticker row handed on; nothing
    reconnects."""
    bound = 20_000
    disk = trio.Event()  # set: the disk answers again

    async def stalling_disk(fn: Callable[..., Any], *args: Any) -> Any:
        if getattr(fn, "__name__", "") == "write_lines":
            await disk.wait()
        await trio.lowlevel.checkpoint()
        return fn(*args)

    journal = JournalWriter(
        journal_config(tmp_path),
        "t1",
        virtual_wall_us,
        run_sync=stalling_disk,
        flush_bytes=4_000,
        max_buffer_bytes=bound,
    )
    async with (
        sim_exchange(rate=200.0, clock=virtual_wall_us, buffer_limit=20_000) as sim,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(journal.run)
        sink = row_sink(nursery)
        conn = read_ahead_ticker(sim, tmp_path, sink, journal=journal)
        async with trio.open_nursery() as connections:
            connections.start_soon(conn.run)
            while not journal.waiting:  # noqa: ASYNC110 - state of the task under test
                await trio.sleep(0.01)
            read = conn.messages
            await trio.sleep(30)
            # the handling waits for the journal; the reader read on, into the read-ahead
            assert journal.waiting == 1 and not conn.paused and not conn.blocked
            assert conn.messages - read > 1_000 and conn.read_ahead > 1_000
            assert sim.truth.undelivered["overflow"] == 0
            longest = max(len(line) for line in journal._buffer)
            assert bound < journal.buffered_bytes <= bound + longest
            assert journal.peak_bytes <= bound + longest
            disk.set()
            while conn.read_ahead > 10:  # noqa: ASYNC110
                await trio.sleep(0.01)
            connections.cancel_scope.cancel()  # what was read ahead is handled first
        await journal.flush()
        assert (conn.sessions, conn.reconnects) == (1, 0), conn.last_error
        nursery.cancel_scope.cancel()
    frames = [
        r
        for r in read_journal([tmp_path / "journal"])
        if isinstance(r, JournalRecord) and r.direction == "in"
    ]
    assert [r.frame_no for r in frames] == list(range(1, conn.messages + 1))
    tickers = sum(b'"type":"ticker"' in r.raw for r in frames)
    assert tickers == sink.rows["tickers"] == conn.messages - 1  # all but the reply


async def test_the_whole_exchange_sockets_share_one_read_ahead_limit_in_bytes(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """``websocket.read_ahead_bytes`` bounds the read-ahead of every whole-exchange socket
    of a gatherer together (issue 20: 131 072 frames a socket, ~150 MiB for ``ticker`` and
    ``trade``, put the gatherer's worst case at ~1 180 MiB). The tickers' queue is full
    for 30 s: the ``ticker`` reader fills the shared 50 000 bytes and stops; the ``trade``
    connection, whose handling keeps up, reads on a frame at a time (its own read-ahead
    empty), so it is neither starved nor taken for silent. Held never passes the limit by
    more than one frame a socket; once the tickers have room every frame read is handled,
    the budget is empty again, nothing reconnects and the exchange dropped nothing (its
    buffer holds what was not read)."""
    limit = 50_000
    async with (
        sim_exchange(rate=200.0, clock=virtual_wall_us, buffer_limit=16_000_000) as sim,
        trio.open_nursery() as nursery,
    ):
        behind = Behind()
        sink = row_sink(nursery, "tickers", behind.consume)
        ctx = context(
            sim,
            tmp_path,
            memory_connector(sim, lockstep=True),
            sink,
            **{"websocket.read_ahead_bytes": str(limit)},
        )
        ctx.wall_us = virtual_wall_us
        budget = ctx.read_ahead
        assert budget is not None and budget.limit == limit
        ticker = Connection(ctx, "ticker-0", "ticker", scoped=False)
        trade = Connection(ctx, "trade-0", "trade", scoped=False)
        nursery.start_soon(ticker.run)
        nursery.start_soon(trade.run)
        await trio.sleep(30)
        assert ticker.blocked and ticker.read_ahead > 10
        frame = 2 * budget.cost(b"x" * 1024)  # a frame a socket past it, at most (< 1 KiB)
        assert limit <= budget.held < limit + frame
        # the trade socket kept up: every trade made until a second ago is handled
        made = [t for t in sim.truth.trades if t.exchange_ts < virtual_wall_us() - 1_000_000]
        assert len(made) > 100 and sink.rows["trades"] >= len(made)
        assert trade.read_ahead <= 1
        behind.room.set()
        while ticker.read_ahead or trade.read_ahead:  # noqa: ASYNC110
            await trio.sleep(0.01)
        assert budget.held == 0 and budget.peak < limit + frame
        assert not ticker.blocked and not trade.blocked
        assert (ticker.sessions, trade.sessions) == (1, 1), (
            ticker.last_error,
            trade.last_error,
        )
        assert sim.truth.undelivered["overflow"] == 0
        assert len(behind.rows) == sink.rows["tickers"] >= ticker.messages - 1  # all but the reply
        nursery.cancel_scope.cancel()
