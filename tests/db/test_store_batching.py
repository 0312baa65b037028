"""Batch sealing: batch_size or flush_interval, whichever comes first; the memory bound.

Only the collector runs here (no database), so the sealing test can use the autojump clock.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from kalshi.config import StoreConfig
from kalshi.models.rows import GapRow
from kalshi.store import Store


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


async def test_batches_seal_at_size_or_interval(
    autojump_clock: trio.testing.MockClock, make_cfg: Callable[..., StoreConfig]
) -> None:
    store = Store("postgresql://unused", make_cfg(batch_size=100, flush_interval=0.5))
    writer = store._writers["gaps"]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.collect)
            async with store.sender("gaps") as send:
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
            store._writers["gaps"].send.close()
    assert [b.seq for b in writer.memory] == [1, 2, 3, 4]
    assert [r.start_ts for b in writer.memory for r in b.rows] == list(range(251))


async def test_over_the_memory_bound_batches_spill_to_disk(
    make_cfg: Callable[..., StoreConfig],
) -> None:
    # Real clock: spilling runs in a worker thread, which autojump would race past.
    store = Store("postgresql://unused", make_cfg(batch_size=10, memory_rows=25))
    store._open()
    writer = store._writers["gaps"]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.collect)
            async with store.sender("gaps") as send:
                for i in range(60):
                    await send.send(gap(i))
            writer.send.close()
    assert [b.seq for b in writer.memory] == [1, 2]
    assert (writer.spool.files, writer.spool.rows, writer.spool.head()) == (4, 40, 3)
    assert writer.spool.read(3).rows == [gap(i) for i in range(20, 30)]
    stats = store.stats().tables["gaps"]
    assert (stats.queue_rows, stats.spool_rows) == (20, 40)
    store._lock.close()  # type: ignore[union-attr]
