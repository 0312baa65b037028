"""Machine faults against the batch writers (issue 18): a full spool disk (a real tmpfs),
damaged spool files, a locked table and a hung write at shutdown (a real PostgreSQL)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import trio
from prometheus_client import REGISTRY

from kalshi.config import Duration, StoreConfig
from kalshi.errors import StoreError
from kalshi.models.rows import MarketRow, Row, TradeRow
from kalshi.store import EmbeddedPostgres, Store, connect_db, migrate, open_store
from kalshi.store.schema import TABLES
from kalshi.store.spool import Spool

T0 = 1_795_608_000_000_000


def trade(i: int) -> TradeRow:
    return TradeRow(
        exchange_ts=T0 + i,
        received_at=T0 + i + 7,
        gatherer_id="g-1",
        ticker=f"MKT-{i % 5}",
        trade_id=f"00000000-0000-4000-8000-{i:012d}",
        price=1_000 + i,
        size=100 + i,
        taker_side=i % 2 == 0,
        is_block_trade=False,
        source="ws",
        conn_id=1,
        frame_no=i + 1,
        seq=i + 1,
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_disk("64k")``: a fresh tmpfs of that size (a disk that fills up for real)."""
    mounts: list[Path] = []

    def make(size: str) -> Path:
        point = tmp_path / f"disk-{len(mounts)}"
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                       check=True)  # fmt: skip
        mounts.append(point)
        return point

    yield make
    for point in mounts:
        subprocess.run(["umount", "--lazy", str(point)], check=True)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its disk is full."""
    with path.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(bytes(4096))
        except OSError:
            pass


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def with_db(cfg: StoreConfig, **changes: object) -> StoreConfig:
    return attrs.evolve(cfg, database=attrs.evolve(cfg.database, **changes))


async def send_rows(store: Store, rows: list[TradeRow]) -> None:
    async with store.sender("trades") as send:
        for row in rows:
            await send.send(row)


async def wait_until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 - polls store stats, which have no event to wait on
        await trio.sleep(0.01)


def spool_on(disk: Path, cfg: StoreConfig) -> StoreConfig:
    """``cfg`` with its spool on ``disk``."""
    return attrs.evolve(cfg, spool=attrs.evolve(cfg.spool, dir=str(disk / "spool")))


async def database_back(pg: EmbeddedPostgres, store: Store, rows: list[TradeRow]) -> None:
    """Start ``pg`` again; return once ``rows`` are all collected and committed and the
    reading has resumed."""
    await trio.to_thread.run_sync(pg.start)
    await wait_until(lambda: store.collected()["trades"] == len(rows))
    await store.drain()
    # reading resumes once a commit leaves memory under its bound: the collector
    # may still be paused when the last commit wakes drain() (a loaded machine)
    await wait_until(lambda: not store.stats().paused)


def trades_in(url: str) -> list[Row]:
    with connect_db(url) as db:
        return db.fetch_rows("trades")


async def test_spool_disk_full_while_the_database_is_down_loses_nothing(
    own_pg: EmbeddedPostgres,
    make_cfg: Callable[..., StoreConfig],
    small_disk: Callable[[str], Path],
) -> None:
    # Issue 18 item 1: sealing a batch on a full spool disk crashed the tree.
    migrate(own_pg.url)
    disk = small_disk("64k")
    cfg = spool_on(disk, make_cfg(batch_size=50, flush_interval=5.0, memory_rows=200))
    rows = [trade(i) for i in range(3000)]
    with trio.fail_after(120):
        async with open_store(own_pg.url, cfg) as store, trio.open_nursery() as nursery:
            await trio.to_thread.run_sync(own_pg.stop)
            nursery.start_soon(send_rows, store, rows)
            # the spool fills, then memory reaches twice its bound: reading pauses
            await wait_until(lambda: store.stats().paused and not store.stats().db_up)
            stats = store.stats()
            assert (stats.db_up, stats.spool_ok) == (False, False)
            assert "No space left on device" in stats.spool_error
            await database_back(own_pg, store, rows)
    assert trades_in(own_pg.url) == rows


async def test_shutdown_with_a_full_spool_disk_says_how_many_rows_it_kept(
    own_pg: EmbeddedPostgres,
    make_cfg: Callable[..., StoreConfig],
    small_disk: Callable[[str], Path],
) -> None:
    # At shutdown the spill went on past a refused table? It stopped at the first one.
    migrate(own_pg.url)
    disk = small_disk("16k")
    cfg = spool_on(disk, make_cfg(batch_size=50, flush_interval=5.0, grace=0.5))
    rows = [trade(i) for i in range(500)]
    await trio.to_thread.run_sync(own_pg.stop)
    with trio.fail_after(60), pytest.raises(StoreError) as caught:
        async with open_store(own_pg.url, cfg) as store:
            await send_rows(store, rows)
            await wait_until(lambda: store.collected()["trades"] == 500)
    spool = Spool(disk / "spool", TABLES["trades"])
    spool.load()
    kept = [row for seq in sorted(spool.seqs()) for row in spool.read(seq).rows]
    refused = 500 - len(kept)
    assert 0 < refused < 500
    assert str(caught.value).startswith(f"{refused} rows neither written nor spooled at shutdown")
    assert kept == rows[: len(kept)]


async def test_a_locked_table_is_noticed_and_written_once_released(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    # Issue 18 item 3: a table held by LOCK TABLE ... ACCESS EXCLUSIVE was never noticed.
    cfg = with_db(make_cfg(batch_size=50, flush_interval=0.05), lock_timeout=Duration(0.2))
    rows = [trade(i) for i in range(250)]
    with trio.fail_after(60), connect_db(db_url) as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
        async with open_store(db_url, cfg) as store:
            await send_rows(store, rows)
            await wait_until(lambda: not store.stats().db_up)
            assert "lock timeout" in store.stats().db_error
            locker.execute("ROLLBACK")
            await store.committed()
            assert store.stats().db_up
    assert trades_in(db_url) == rows


async def test_shutdown_within_grace_while_a_write_hangs(
    db_url: str, make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    # SIGTERM while PostgreSQL hangs never exited: threads cannot be cancelled. Now the
    # hung write is abandoned at the grace deadline and its rows are spooled.
    cfg = with_db(make_cfg(batch_size=50, flush_interval=0.05, grace=0.5), lock_timeout=0.0,
                  statement_timeout=0.0)  # fmt: skip
    rows = [trade(i) for i in range(250)]
    with trio.fail_after(60), connect_db(db_url) as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")

        def waiting() -> int:
            # another session: pg_stat_activity is a snapshot per transaction
            with connect_db(db_url) as watcher:
                found = watcher.query(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            return int(found[0][0])

        async with open_store(db_url, cfg) as store:
            await send_rows(store, rows)
            await wait_until(lambda: waiting() > 0)
        spool = Spool(tmp_path / "spool", TABLES["trades"])
        spool.load()
        assert spool.rows == 250
        locker.execute("ROLLBACK")
    async with open_store(db_url, cfg) as store:
        with trio.fail_after(60):
            await store.drain()
    assert trades_in(db_url) == rows


async def test_a_second_live_gatherer_with_the_same_id_is_refused(
    db_url: str, tmp_path: Path
) -> None:
    # Issue 18 item 7: two gatherers with one gatherer_id and database stored every delta
    # twice. The second store is refused while the first lives; another id is welcome.
    from tests.db.conftest import store_config

    first_cfg = store_config(tmp_path / "a")
    with trio.fail_after(30):
        async with open_store(db_url, first_cfg):
            with pytest.raises(StoreError, match="gatherer_id 'local-1' is already recording"):
                async with open_store(db_url, store_config(tmp_path / "b")):
                    pass
            other = attrs.evolve(store_config(tmp_path / "c"), gatherer_id="local-2")
            async with open_store(db_url, other):
                pass
        async with open_store(db_url, store_config(tmp_path / "b")):
            pass  # the first one is gone: its lock with it


async def test_a_full_spool_disk_with_no_memory_bound_never_blocks_the_database(
    own_pg: EmbeddedPostgres,
    make_cfg: Callable[..., StoreConfig],
    small_disk: Callable[[str], Path],
) -> None:
    # Tester F1: with spool.memory_rows 0 every batch goes through the spool; a full spool
    # disk kept the collector paused after the database was back, nothing was written.
    migrate(own_pg.url)
    disk = small_disk("64k")
    cfg = spool_on(disk, make_cfg(batch_size=50, flush_interval=0.05, memory_rows=0))
    rows = [trade(i) for i in range(3000)]
    with trio.fail_after(120):
        async with open_store(own_pg.url, cfg) as store, trio.open_nursery() as nursery:
            await trio.to_thread.run_sync(fill, disk / "filler")
            await trio.to_thread.run_sync(own_pg.stop)
            nursery.start_soon(send_rows, store, rows)
            await wait_until(lambda: store.stats().paused and not store.stats().db_up)
            assert store.stats().spool_ok is False
            await database_back(own_pg, store, rows)
            assert store.stats().spool_ok is False  # the disk is still full
    assert trades_in(own_pg.url) == rows


async def test_the_database_state_is_unknown_until_an_operation_answers(
    own_pg: EmbeddedPostgres, make_cfg: Callable[..., StoreConfig]
) -> None:
    # Tester F2: /health said the database was up (no write tried yet) while it was down
    # and kalshi_store_db_up said 0: one source, and unknown is not up.
    migrate(own_pg.url)
    cfg = make_cfg(batch_size=50, flush_interval=0.05)
    rows = [trade(i) for i in range(100)]
    with trio.fail_after(60):
        async with open_store(own_pg.url, cfg, watermark=False) as store:
            assert (store.stats().db_up, gauge("kalshi_store_db_up")) == (None, 0.0)
            await trio.to_thread.run_sync(own_pg.stop)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_rows, store, rows)
                await wait_until(lambda: store.stats().db_up is False)
                assert gauge("kalshi_store_db_up") == 0.0
                await trio.to_thread.run_sync(own_pg.start)
                await store.committed()
            assert (store.stats().db_up, gauge("kalshi_store_db_up")) == (True, 1.0)
    assert trades_in(own_pg.url) == rows


def market(i: int) -> MarketRow:
    return MarketRow(
        ticker=f"MKT-{i}",
        event_ticker="EV",
        status="open",
        market_type="binary",
        title="T",
        open_time=T0,
        close_time=None,
        updated_at=T0 + i,
        gatherer_id="g-1",
        payload="{}",
    )


async def test_reading_pauses_at_twice_the_memory_bound_of_all_tables_together(
    own_pg: EmbeddedPostgres,
    make_cfg: Callable[..., StoreConfig],
    small_disk: Callable[[str], Path],
) -> None:
    """Database down, spool disk full, ``spool.memory_rows`` 100 (batches of 100): the
    writers stop taking rows once the rows in memory, all tables together, pass 200, and
    ``paused`` names the tables that stopped. 300 trades seal three batches (300 > 200:
    trades paused); 100 markets rows then seal one (400: markets paused, where each table
    alone was bounded before, so markets would have taken 300 rows more); 100 more markets
    rows wait in its channel. The database back, all 500 are written, reading resumes."""
    migrate(own_pg.url)
    disk = small_disk("64k")
    cfg = spool_on(disk, make_cfg(batch_size=100, flush_interval=3600, memory_rows=100))
    trades = [trade(i) for i in range(300)]
    markets = [market(i) for i in range(200)]
    with trio.fail_after(120):
        async with open_store(own_pg.url, cfg) as store:
            await trio.to_thread.run_sync(own_pg.stop)
            fill(disk / "filler")
            await send_rows(store, trades)
            await wait_until(lambda: store.stats().paused == ("trades",))
            assert (store.stats().memory_rows, store.stats().spool_ok) == (300, False)
            async with store.sender("markets") as send:
                await send.send_batch(markets[:100])
                await wait_until(lambda: store.stats().paused == ("markets", "trades"))
                await send.send_batch(markets[100:])
            stats = store.stats()
            assert stats.memory_rows == 400
            assert (stats.tables["trades"].queue_rows, stats.tables["markets"].queue_rows) == (
                300,
                200,
            )
            await trio.to_thread.run_sync(own_pg.start)
            await store.drain()
            await wait_until(lambda: not store.stats().paused)
            assert store.collected() == {**store.collected(), "trades": 300, "markets": 200}
            assert store.stats().memory_rows == 0
    assert trades_in(own_pg.url) == trades
    with connect_db(own_pg.url) as db:
        assert len(db.fetch_rows("markets")) == 200
