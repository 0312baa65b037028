"""Batch sealing: batch_size or flush_interval, whichever comes first; the memory bound.

Only the collector runs here (no database), so the sealing test can use the autojump clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing

from kalshi.config import StoreConfig
from kalshi.models.rows import GapRow
from kalshi.store import Store
from kalshi.store.writer import RowSender, _TableWriter


def gap(i: int) -> GapRow:
    return GapRow(
        start_ts=i,
        end_ts=None,
        gatherer_id="g-1",
        conn_id=1,
        sid=None,
        ticker=None,
        kind="reconnect",
        expected_seq=None,
        got_seq=None,
        detail="",
    )


@asynccontextmanager
async def collecting(store: Store) -> AsyncIterator[tuple[_TableWriter, RowSender]]:
    """The ``gaps`` writer with its collector running, and a sender to it (closed at the
    end, then the writer's channel, so the collector seals what is left and returns)."""
    writer = store._writers["gaps"]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.collect)
            async with store.sender("gaps") as send:
                yield writer, send
            writer.send.close()


async def test_batches_seal_at_size_or_interval(
    autojump_clock: trio.testing.MockClock, make_cfg: Callable[..., StoreConfig]
) -> None:
    store = Store("postgresql://unused", make_cfg(batch_size=100, flush_interval=0.5))
    async with collecting(store) as (writer, send):
        start = trio.current_time()
        for i in range(250):
            await send.send(gap(i))
        await trio.testing.wait_all_tasks_blocked()
        # Two full batches at once; the 50 left wait for the interval.
        assert [len(b.rows) for b in writer.memory] == [100, 100]
        assert len(writer.partial) == 50
        await trio.sleep_until(start + 0.5 - 0.001)
        assert [len(b.rows) for b in writer.memory] == [100, 100]
        await trio.sleep_until(start + 0.5 + 0.001)
        assert [len(b.rows) for b in writer.memory] == [100, 100, 50]
        # A lone row waits exactly one interval from its arrival.
        lone = trio.current_time()
        await send.send(gap(250))
        await trio.sleep_until(lone + 0.499)
        assert len(writer.memory) == 3
        await trio.sleep_until(lone + 0.501)
        assert [len(b.rows) for b in writer.memory] == [100, 100, 50, 1]
    assert [b.seq for b in writer.memory] == [1, 2, 3, 4]
    assert [r.start_ts for b in writer.memory for r in b.rows] == list(range(251))


async def test_over_the_memory_bound_batches_spill_to_disk(
    make_cfg: Callable[..., StoreConfig],
) -> None:
    # Real clock: spilling runs in a worker thread, which autojump would race past.
    store = Store("postgresql://unused", make_cfg(batch_size=10, memory_rows=25))
    store._open()
    async with collecting(store) as (writer, send):
        for i in range(60):
            await send.send(gap(i))
    assert [b.seq for b in writer.memory] == [1, 2]
    assert (writer.spool.files, writer.spool.rows, writer.spool.head()) == (4, 40, 3)
    assert writer.spool.read(3).rows == [gap(i) for i in range(20, 30)]
    stats = store.stats().tables["gaps"]
    assert (stats.queue_rows, stats.spool_rows) == (20, 40)
    store._lock.close()  # type: ignore[union-attr]


async def test_a_batch_handed_over_whole_is_sealed_in_batches_of_batch_size(
    autojump_clock: trio.testing.MockClock, make_cfg: Callable[..., StoreConfig]
) -> None:
    store = Store("postgresql://unused", make_cfg(batch_size=100, flush_interval=0.5))
    async with collecting(store) as (writer, send):
        start = trio.current_time()
        await send.send_batch([gap(i) for i in range(250)])  # one hand-over
        await trio.testing.wait_all_tasks_blocked()
        assert [len(b.rows) for b in writer.memory] == [100, 100]
        assert len(writer.partial) == 50
        assert store.stats().tables["gaps"].queue_rows == 250
        send.send_nowait(gap(250))  # a row is a batch of one
        await trio.testing.wait_all_tasks_blocked()
        assert len(writer.partial) == 51
        # the rest waits flush_interval from the batch's arrival, then is sealed
        await trio.sleep_until(start + 0.5 - 0.001)
        assert len(writer.memory) == 2
        await trio.sleep_until(start + 0.5 + 0.001)
        assert [len(b.rows) for b in writer.memory] == [100, 100, 51]
    assert [r.start_ts for b in writer.memory for r in b.rows] == list(range(251))
    # numbers 1..251 handed over; none committed: every sealed batch holds number 1 or later
    assert (writer.next_number, writer.committed_through()) == (252, 0)


async def test_the_channel_is_bounded_in_rows_and_a_waiting_batch_counts_as_pending(
    autojump_clock: trio.testing.MockClock, make_cfg: Callable[..., StoreConfig]
) -> None:
    store = Store("postgresql://unused", make_cfg(batch_size=100, flush_interval=0.5))
    writer = store._writers["gaps"]
    assert writer.capacity == 1024  # max(1024, 4 * batch_size) rows
    send = store.sender("gaps")
    send.send_batch_nowait([gap(i) for i in range(1000)])
    send.send_batch_nowait([gap(i) for i in range(1000, 1030)])  # room for it: taken whole
    assert store.stats().tables["gaps"].queue_rows == 1030
    for refused in (
        lambda: send.send_batch_nowait([gap(1030)]),
        lambda: send.send_nowait(gap(1030)),
    ):
        try:
            refused()
            raise AssertionError("a full channel took rows")
        except trio.WouldBlock:
            pass
    assert writer.next_number == 1031  # nothing refused was numbered
    handed = trio.Event()

    async def late() -> None:
        await send.send_batch([gap(-1), gap(-2)])  # older than any row in the channel
        handed.set()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(late)
            await trio.testing.wait_all_tasks_blocked()
            assert not handed.is_set()
            # pending from the moment its send started: the watermark stops at it
            assert writer.next_number == 1033
            assert store.complete_before(10**18) == -2
            nursery.start_soon(writer.collect)
            await handed.wait()
            await trio.sleep(1)  # past flush_interval: everything is sealed
            send.close()
            writer.send.close()
    assert [r.start_ts for b in writer.memory for r in b.rows] == [*range(1030), -1, -2]
    assert store.stats().tables["gaps"].queue_rows == 1032
