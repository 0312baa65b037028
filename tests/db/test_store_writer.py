"""The batch writers against a real PostgreSQL: exact round trips, keys, outages, dead letters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from kalshi.config import StoreConfig
from kalshi.errors import StoreError
from kalshi.gather.service import COPIED_STRAIGHT
from kalshi.models.rows import (
    DeltaRow,
    GapRow,
    LifecycleRow,
    MarketRow,
    Row,
    SnapshotRow,
    TickerRow,
    TradeRow,
)
from kalshi.store import EmbeddedPostgres, Store, connect_db, migrate, open_store
from kalshi.store.spool import database_identity

T0 = 1_732_486_441_123_456  # 2024-11-24T22:14:01.123456Z in µs: sub-second on purpose
MAX_PRICE = 100_000  # $1.00000
MAX_BIGINT = 2**63 - 1


def trade(i: int, **changes: object) -> TradeRow:
    row = TradeRow(
        exchange_ts=T0 + i,
        received_at=T0 + i + 1_500,
        gatherer_id="g-1",
        ticker=f"MKT-{i % 7}",
        trade_id=f"00000000-0000-4000-8000-{i:012d}",
        price=(i * 37) % (MAX_PRICE + 1),
        size=1 + i * 13,
        taker_side=i % 2 == 0,
        is_block_trade=i % 5 == 0,
        source="ws",
        conn_id=T0,
        frame_no=i + 1,
        seq=i + 1,
    )
    return row._replace(**changes)


def delta(i: int, **changes: object) -> DeltaRow:
    row = DeltaRow(
        exchange_ts=T0,
        received_at=T0 + 10,
        gatherer_id="g-1",
        ticker="MKT",
        side=True,
        price=42_000,
        size_delta=-1_350,
        conn_id=T0,
        frame_no=i + 1,
        sid=3,
        seq=i + 1,
    )
    return row._replace(**changes)


def every_table_rows() -> dict[str, list[Row]]:
    """Edge values for every table: price bounds, fractional and signed sizes, NULLs, µs."""
    return {
        "trades": [
            trade(0, price=0, size=1),  # $0, 0.01 contract
            trade(1, price=MAX_PRICE, size=13_601, taker_side=False),  # $1, 136.01
            trade(2, price=12_345, size=MAX_BIGINT, source="rest", conn_id=0, frame_no=0, seq=None),
        ],
        "orderbook_deltas": [
            delta(0, price=1, size_delta=-MAX_BIGINT),
            delta(1, side=False, price=99_999, size_delta=50),
        ],
        "orderbook_snapshots": [
            SnapshotRow(
                snapshot_ts=T0,
                exchange_ts=None,
                received_at=T0 + 1,
                gatherer_id="g-1",
                ticker="MKT",
                source="rest",
                yes_bids="[[1, 100], [99999, 13601]]",
                no_bids="[]",
                conn_id=0,
                frame_no=0,
                sid=None,
                seq=None,
            ),
            SnapshotRow(
                snapshot_ts=T0 + 1,
                exchange_ts=T0,
                received_at=T0 + 2,
                gatherer_id="g-1",
                ticker="MKT",
                source="ws",
                yes_bids="[[42000,1]]",
                no_bids="[[58000,250]]",
                conn_id=T0,
                frame_no=9,
                sid=4,
                seq=1,
            ),
        ],
        "tickers": [
            TickerRow(
                exchange_ts=T0,
                received_at=T0 + 5,
                gatherer_id="g-1",
                ticker="MKT",
                yes_bid=0,
                yes_ask=MAX_PRICE,
                last_price=42_000,
                volume=MAX_BIGINT,
                open_interest=13_601,
                dollar_volume=987_654_321_000,
                dollar_open_interest=5,
                yes_bid_size=100,
                yes_ask_size=200,
                last_trade_size=1,
                conn_id=T0,
                frame_no=17,
            ),
            TickerRow(
                exchange_ts=T0,
                received_at=T0 + 5,
                gatherer_id="g-1",
                ticker="MKT",
                yes_bid=None,
                yes_ask=None,
                last_price=None,
                volume=None,
                open_interest=None,
                dollar_volume=None,
                dollar_open_interest=None,
                yes_bid_size=None,
                yes_ask_size=None,
                last_trade_size=None,
                conn_id=T0,
                frame_no=18,
            ),
        ],
        "market_lifecycle": [
            LifecycleRow(
                exchange_ts=T0,
                received_at=T0 + 3,
                gatherer_id="g-1",
                ticker="MKT",
                event_type="determined",
                payload='{"market_ticker": "MKT", "result": "yes", "n": 1.5}',
                conn_id=T0,
                frame_no=20,
                seq=2,
            ),
            LifecycleRow(
                exchange_ts=T0,
                received_at=T0 + 3,
                gatherer_id="g-1",
                ticker="EVT",
                event_type="event_created",
                payload="{}",
                conn_id=T0,
                frame_no=21,
                seq=None,
            ),
        ],
        "markets": [
            MarketRow(
                ticker="MKT",
                event_ticker="EVT",
                status="active",
                market_type="binary",
                title="Will it? — “quotes” ✓",
                open_time=T0,
                close_time=None,
                updated_at=T0,
                gatherer_id="g-1",
                payload='{"ticker": "MKT"}',
            ),
        ],
        "gaps": [
            GapRow(
                start_ts=T0,
                end_ts=T0 + 999_999,
                gatherer_id="g-1",
                conn_id=T0,
                sid=3,
                ticker="MKT",
                kind="seq_gap",
                expected_seq=5,
                got_seq=9,
                detail="missed 4",
            ),
            GapRow(
                start_ts=T0,
                end_ts=None,
                gatherer_id="g-1",
                conn_id=T0,
                sid=None,
                ticker=None,
                kind="reconnect",
                expected_seq=None,
                got_seq=None,
                detail="",
            ),
        ],
    }


def normalised(rows: list[Row]) -> list[tuple[object, ...]]:
    """JSONB text comes back in PostgreSQL's normal form: compare JSON parsed."""
    out = []
    for row in rows:
        out.append(
            tuple(json.loads(v) if isinstance(v, str) and v[:1] in ("[", "{") else v for v in row)
        )
    return sorted(out, key=repr)


# The write paths: staged; COPY straight into the table first, the staged insert only for a
# batch that fails so (a replay: every table); and the live gatherer's mix (COPY straight
# for its WebSocket deltas and tickers, staged for the rest).
COPY_NEW = pytest.mark.parametrize(
    "copy_new", [False, True, COPIED_STRAIGHT], ids=["staged", "copy_new", "gatherer"]
)


async def send_all(store: Store, table: str, rows: list[Row]) -> None:
    async with store.sender(table) as send:
        for row in rows:
            await send.send(row)


def moved(spool: Path, url: str) -> None:
    """The operator's step when a database moved (the spool names the old address): the
    spool's rows belong to the database now at ``url``."""
    assert (spool / "DATABASE").read_text() == "127.0.0.1:1/kalshi\n"
    (spool / "DATABASE").write_text(database_identity(url) + "\n")


async def wait_until(predicate: Callable[[], bool], step: float = 0.01) -> None:
    while not predicate():  # noqa: ASYNC110 - polls store stats, which have no event to wait on
        await trio.sleep(step)


@COPY_NEW
async def test_every_table_round_trips_exactly(
    copy_new: bool | frozenset[str], db_url: str, cfg: StoreConfig
) -> None:
    rows = every_table_rows()
    with trio.fail_after(30):
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            for table, table_rows in rows.items():
                await send_all(store, table, table_rows)
            await store.committed()
            assert {t: store.collected()[t] for t in rows} == {t: len(r) for t, r in rows.items()}
    with connect_db(db_url) as db:
        for table, table_rows in rows.items():
            assert normalised(db.fetch_rows(table)) == normalised(table_rows), table


async def test_same_timestamp_deltas_are_both_kept(db_url: str, cfg: StoreConfig) -> None:
    # Same market, side, price and exchange time: two real updates, two frames.
    first, second = delta(0), delta(1)
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            await send_all(store, "orderbook_deltas", [first, second])
    with connect_db(db_url) as db:
        assert db.fetch_rows("orderbook_deltas") == [first, second]


@COPY_NEW
async def test_duplicate_batch_leaves_one_copy(
    copy_new: bool | frozenset[str], db_url: str, cfg: StoreConfig
) -> None:
    trades = [trade(i) for i in range(500)]
    deltas = [delta(i) for i in range(500)]
    with trio.fail_after(30):
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            await send_all(store, "trades", trades)
            await send_all(store, "orderbook_deltas", deltas)
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            await send_all(store, "trades", trades)
            await send_all(store, "orderbook_deltas", deltas + deltas)
        stats = store.stats().tables
    assert (stats["trades"].rows_written, stats["trades"].rows_duplicate) == (0, 500)
    assert (stats["orderbook_deltas"].rows_written, stats["orderbook_deltas"].rows_duplicate) == (
        0,
        1000,
    )
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(trades)
        assert db.count("orderbook_deltas") == 500


@COPY_NEW
async def test_the_first_received_copy_of_a_trade_is_kept(
    copy_new: bool | frozenset[str], db_url: str, cfg: StoreConfig
) -> None:
    # Batch after batch, each followed by its REST copies (a backfill over what the
    # WebSocket gave): as the gatherer received them, the WebSocket rows come first, so
    # they are stored, whichever batch the database is given at once (a replay's rule).
    live = [trade(i) for i in range(2_000)]
    rows: list[Row] = []
    for start in range(0, len(live), 100):
        batch = live[start : start + 100]
        rows += batch
        rows += [t._replace(source="rest", conn_id=0, frame_no=0, seq=None) for t in batch]
    with trio.fail_after(60):
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            await send_all(store, "trades", rows)
    stats = store.stats().tables["trades"]
    assert (stats.rows_written, stats.rows_duplicate) == (2_000, 2_000)
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(live)


@COPY_NEW
async def test_rest_and_ws_copies_of_a_trade_collide(
    copy_new: bool | frozenset[str], db_url: str, cfg: StoreConfig
) -> None:
    live = trade(1)
    backfill = live._replace(source="rest", conn_id=0, frame_no=0, seq=None, received_at=T0 + 9)
    with trio.fail_after(30):
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            await send_all(store, "trades", [live, backfill])
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == [live]


async def test_markets_upsert_keeps_the_newest(db_url: str, cfg: StoreConfig) -> None:
    old = every_table_rows()["markets"][0]
    new = old._replace(status="closed", updated_at=T0 + 10)
    stale = old._replace(status="initialized", updated_at=T0 - 10)
    counts = []  # (new, already stored or not newer, updated) per store
    with trio.fail_after(30):
        for rows in ([old], [new], [stale], [old, new]):
            async with open_store(db_url, cfg) as store:
                await send_all(store, "markets", rows)
            t = store.stats().tables["markets"]
            counts.append((t.rows_written, t.rows_duplicate, t.rows_updated))
    # an update is not a new row: the table holds one market, and only one was counted new;
    # the last batch's winner (new) is the stored version itself: not written again
    assert counts == [(1, 0, 0), (0, 0, 1), (0, 1, 0), (0, 2, 0)]
    with connect_db(db_url) as db:
        assert db.counts()["markets"] == 1
        assert [r._replace(payload="") for r in db.fetch_rows("markets")] == [
            new._replace(payload="")
        ]


async def test_a_market_version_equal_to_the_stored_one_is_not_written(
    db_url: str, cfg: StoreConfig
) -> None:
    # Outside tester F2: a replay again (same rows) and a relist after a restart (same
    # market, a later updated_at, maybe another gatherer) rewrote every market with a new
    # ingest_xid, counted "updated", and the deduplicator merged them all again.
    old = every_table_rows()["markets"][0]
    again = old._replace(updated_at=T0 + 10, gatherer_id="g-2")  # the same version, later
    closed = old._replace(
        status="closed", updated_at=T0 + 20, payload='{"status": "closed", "ticker": "MKT"}'
    )
    settled = closed._replace(  # a change in the payload alone is a new version too
        updated_at=T0 + 30, payload='{"result": "yes", "status": "closed", "ticker": "MKT"}'
    )

    def stored() -> list[tuple[object, ...]]:
        with connect_db(db_url) as db:
            return db.query("SELECT updated_at, gatherer_id, status, ingest_xid FROM markets")

    counts = []  # (new, already stored or not newer, updated) per store
    states = []
    with trio.fail_after(30):
        for rows in ([old], [old], [again], [old, again], [closed], [closed], [settled]):
            async with open_store(db_url, cfg) as store:
                await send_all(store, "markets", rows)
            t = store.stats().tables["markets"]
            counts.append((t.rows_written, t.rows_duplicate, t.rows_updated))
            states.append(stored())
    assert counts == [(1, 0, 0), (0, 1, 0), (0, 1, 0), (0, 2, 0), (0, 0, 1), (0, 1, 0), (0, 0, 1)]
    xids = [state[0][3] for state in states]
    assert xids[0] < xids[4] < xids[6]
    assert states == [[(T0, "g-1", "active", xids[0])]] * 4 + [
        [(T0 + 20, "g-1", "closed", xids[4])]
    ] * 2 + [[(T0 + 30, "g-1", "closed", xids[6])]]
    with connect_db(db_url) as db:
        assert db.fetch_rows("markets") == [settled]


@COPY_NEW
async def test_gap_without_ticker_is_stored_once(
    copy_new: bool | frozenset[str], db_url: str, cfg: StoreConfig
) -> None:
    gap = every_table_rows()["gaps"][1]
    with trio.fail_after(30):
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            await send_all(store, "gaps", [gap, gap._replace(detail="seen again")])
    with connect_db(db_url) as db:
        assert db.fetch_rows("gaps") == [gap]


async def test_gaps_on_two_sids_sharing_a_microsecond_are_two_rows(
    db_url: str, cfg: StoreConfig
) -> None:
    # One connection, two subscriptions whose previous frames were received in the same µs.
    first = GapRow(
        start_ts=T0,
        end_ts=T0 + 9,
        gatherer_id="g-1",
        conn_id=T0,
        sid=1,
        ticker=None,
        kind="seq_gap",
        expected_seq=5,
        got_seq=7,
        detail="trade: 2 frame(s) missing",
    )
    second = first._replace(sid=2, expected_seq=3, got_seq=4, detail="x: 1 frame(s) missing")
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            await send_all(store, "gaps", [first, second, second._replace(detail="again")])
    with connect_db(db_url) as db:
        assert db.fetch_rows("gaps") == [first, second]


@COPY_NEW
async def test_poisoned_row_is_dead_lettered_and_neighbours_land(
    copy_new: bool | frozenset[str],
    db_url: str,
    make_cfg: Callable[..., StoreConfig],
    tmp_path: Path,
) -> None:
    cfg = make_cfg(batch_size=1000, flush_interval=5.0)
    trades = [trade(i) for i in range(1000)]
    poisoned = trades[637] = trades[637]._replace(price=MAX_PRICE + 1)
    with trio.fail_after(30):
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            await send_all(store, "trades", trades)
            await store.committed()
            stats = store.stats().tables["trades"]
            assert stats.batches == 1
    assert (stats.rows_written, stats.dead_letters, stats.rows_duplicate) == (999, 1, 0)
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(t for t in trades if t is not poisoned)
    lines = (tmp_path / "dead-letter" / "trades.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["row"] == list(poisoned)
    assert record["error"].startswith("23514: ")  # check_violation
    assert "trades_price_check" in record["error"]


@COPY_NEW
async def test_value_the_client_cannot_encode_is_dead_lettered(
    copy_new: bool | frozenset[str], db_url: str, cfg: StoreConfig, tmp_path: Path
) -> None:
    trades = [trade(i) for i in range(10)]
    trades[3] = trades[3]._replace(size=2**64)  # does not fit BIGINT
    trades[8] = trades[8]._replace(seq="nine")  # type: ignore[arg-type]  # a bug upstream
    with trio.fail_after(30):
        async with open_store(db_url, cfg, copy_new=copy_new) as store:
            await send_all(store, "trades", trades)
        stats = store.stats().tables["trades"]
    assert (stats.rows_written, stats.dead_letters) == (8, 2)
    lines = (tmp_path / "dead-letter" / "trades.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["row"][12] for r in records] == [4, "nine"]
    assert [r["error"] for r in records] == [
        "OverflowError: int too big to convert",
        "TypeError: 'str' object cannot be interpreted as an integer",
    ]
    with connect_db(db_url) as db:
        assert db.count("trades") == 8


async def test_database_outage_spools_then_drains(
    own_pg: EmbeddedPostgres, make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    migrate(own_pg.url)
    # A long interval: batches seal at exactly 100 rows, so the split below is exact.
    cfg = make_cfg(batch_size=100, flush_interval=5.0, memory_rows=300)
    before = [trade(i) for i in range(500)]
    during = [trade(i) for i in range(500, 2500)]
    with trio.fail_after(60):
        async with open_store(own_pg.url, cfg) as store:
            await send_all(store, "trades", before)
            await store.committed()
            assert store.collected()["trades"] == 500
            await trio.to_thread.run_sync(own_pg.stop)
            await send_all(store, "trades", during)

            def settled() -> bool:
                s = store.stats()
                t = s.tables["trades"]
                return not s.db_up and (t.queue_rows, t.spool_rows) == (300, 1700)

            await wait_until(settled)
            # Memory holds memory_rows; the rest is on disk, one file per batch.
            assert store.stats().tables["trades"].spool_files == 17
            assert len(list((tmp_path / "spool" / "trades").glob("*.batch"))) == 17
            await trio.to_thread.run_sync(own_pg.start)
            await store.drain()
            stats = store.stats().tables["trades"]
            assert (stats.rows_written, stats.spool_files) == (2500, 0)
            stats = store.stats().tables["trades"]
            assert store.stats().db_up
    assert (stats.spool_rows, stats.spool_files, stats.queue_rows, stats.dead_letters) == (
        0,
        0,
        0,
        0,
    )
    assert list((tmp_path / "spool" / "trades").glob("*.batch")) == []
    with connect_db(own_pg.url) as db:
        assert db.fetch_rows("trades") == sorted(before + during)


async def test_exit_with_database_down_spools_everything(
    make_cfg: Callable[..., StoreConfig], db_url: str, tmp_path: Path
) -> None:
    cfg = make_cfg(batch_size=100, flush_interval=3600, grace=5)
    trades = [trade(i) for i in range(250)]
    with trio.fail_after(30):
        async with open_store("postgresql://postgres@127.0.0.1:1/kalshi", cfg) as store:
            await send_all(store, "trades", trades)
        stats = store.stats().tables["trades"]
    assert (stats.spool_rows, stats.spool_files, stats.queue_rows) == (250, 3, 0)
    moved(tmp_path / "spool", db_url)
    # The next store (database back) drains the spool first.
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            await store.drain()
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(trades)


_REPO = str(Path(__file__).resolve().parents[2])
_CHILD = textwrap.dedent(
    """
    import sys, trio
    from kalshi.config import Duration, StoreConfig, SpoolConfig, WriterConfig, WritersConfig
    from kalshi.models.rows import TradeRow
    from kalshi.store import open_store

    spool, count = sys.argv[1], int(sys.argv[2])
    # No flush timer: batches seal at exactly 100 rows, so the file count is exact.
    w = WriterConfig(100, Duration(3600))
    cfg = StoreConfig(
        writers=WritersConfig(trades=w),
        spool=SpoolConfig(dir=spool, memory_rows=0, dead_letter_dir=spool + "-dead"),
    )

    async def main():
        async with open_store("postgresql://postgres@127.0.0.1:1/kalshi", cfg) as store:
            async with store.sender("trades") as send:
                for i in range(count):
                    await send.send(TradeRow(
                        1_732_486_441_123_456 + i, 1, "g-1", "MKT", f"t-{i}", 42000, 13601,
                        True, False, "ws", 1, i + 1, i + 1))
            while store.stats().tables["trades"].spool_rows < count:
                await trio.sleep(0.01)
            print("SPOOLED", flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


async def test_killed_process_spool_is_drained_by_the_next(
    db_url: str, cfg: StoreConfig, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", _CHILD, str(spool), "1000"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": _REPO},
    )
    assert child.stdout is not None
    output = b""
    try:
        with trio.fail_after(60):
            while not output.endswith(b"\n"):
                chunk = await child.stdout.receive_some()
                assert chunk, "child exited early"
                output += chunk
        assert output == b"SPOOLED\n"
    finally:
        child.kill()  # SIGKILL: no shutdown code runs in the child
        await child.wait()
        await child.stdout.aclose()
    assert child.returncode == -signal.SIGKILL
    assert len(list((spool / "trades").glob("*.batch"))) == 10
    moved(spool, db_url)
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            assert store.stats().tables["trades"].spool_rows == 1000
            await store.drain()
            assert store.stats().tables["trades"].rows_written == 1000
    with connect_db(db_url) as db:
        assert db.count("trades") == 1000
        assert db.query("SELECT count(DISTINCT trade_id), min(size), max(size) FROM trades") == [
            (1000, 13601, 13601)
        ]


async def test_metrics_count_rows_batches_and_duplicates(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"table": "tickers"}) or 0.0

    names = [
        "kalshi_store_rows_written_total",
        "kalshi_store_rows_duplicate_total",
        "kalshi_store_batches_total",
        "kalshi_store_flush_seconds_count",
    ]
    before = [sample(n) for n in names]
    row = every_table_rows()["tickers"][0]
    rows = [row._replace(frame_no=i) for i in range(1, 26)]
    with trio.fail_after(30):
        async with open_store(db_url, make_cfg(batch_size=10, flush_interval=3600)) as store:
            await send_all(store, "tickers", rows + rows[:5])
            await store.committed()
            assert store.stats().tables["tickers"].batches == 3
    after = [sample(n) for n in names]
    # 30 rows (5 of them repeats) in batches of 10.
    assert [a - b for a, b in zip(after, before, strict=True)] == [25, 5, 3, 3]
    assert sample("kalshi_store_queue_rows") == 0
    assert sample("kalshi_store_spool_rows") == 0


async def test_unknown_table_is_refused(db_url: str, cfg: StoreConfig) -> None:
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            try:
                store.sender("trade")
            except StoreError as exc:
                assert str(exc).startswith("unknown table 'trade'; expected one of trades, ")
            else:
                raise AssertionError("expected StoreError")


async def test_missing_tables_crash_the_store_but_keep_the_rows(
    empty_db_url: str, make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    trades = [trade(i) for i in range(250)]
    caught: list[BaseException] = []
    with trio.fail_after(30):
        try:
            async with open_store(empty_db_url, make_cfg(batch_size=100)) as store:
                await send_all(store, "trades", trades)
                await trio.sleep_forever()
        except* StoreError as group:
            caught.extend(group.exceptions)
    assert [str(e) for e in caught][:1] == [
        'relation "trades" does not exist: the database is not migrated (not a kalshi'
        " database?): run `kalshi db migrate`"
    ]
    stats = store.stats().tables["trades"]
    assert (stats.rows_written, stats.spool_rows, stats.queue_rows) == (0, 250, 0)
    # Once migrated, the next store writes them.
    migrate(empty_db_url)
    with trio.fail_after(30):
        async with open_store(empty_db_url, make_cfg(batch_size=100)) as store:
            await store.drain()
    with connect_db(empty_db_url) as db:
        assert db.fetch_rows("trades") == sorted(trades)


async def test_cancellation_still_writes_everything_received(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    trades = [trade(i) for i in range(250)]
    cfg = make_cfg(batch_size=1000, flush_interval=3600)  # nothing flushes before the end
    with trio.fail_after(30), trio.CancelScope() as scope:
        async with open_store(db_url, cfg) as store:
            await send_all(store, "trades", trades)
            await trio.testing.wait_all_tasks_blocked()
            assert store.stats().tables["trades"].queue_rows == 250
            scope.cancel()  # as Ctrl-C would
            await trio.sleep_forever()
    assert scope.cancelled_caught
    stats = store.stats().tables["trades"]
    assert (stats.rows_written, stats.queue_rows, stats.spool_rows) == (250, 0, 0)
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(trades)


def spooled_batches(table: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("kalshi_store_spooled_batches_total", {"table": table}) or 0.0


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


@pytest.mark.parametrize("memory_rows", [0, 50, 150])
@pytest.mark.parametrize("table", ["trades", "markets"])  # two flushers, one (an upsert)
async def test_batches_over_the_memory_bound_are_written_with_the_database_up(
    table: str,
    memory_rows: int,
    db_url: str,
    make_cfg: Callable[..., StoreConfig],
    tmp_path: Path,
) -> None:
    # Batches of 100 seal at once (no timer); 0 and 50: every batch is larger than the
    # bound, 150: the second of two waiting batches pushes memory past it. Spooled while
    # the database is up, they are written at once: no outage to end, no restart.
    cfg = make_cfg(batch_size=100, flush_interval=3600, memory_rows=memory_rows)
    rows: list[Row] = [(trade if table == "trades" else market)(i) for i in range(300)]
    before = spooled_batches(table)
    # A batch at a time, each drained: a spooled batch must not wait for the next one.
    rounds = [rows] if memory_rows >= 100 else [rows[i : i + 100] for i in range(0, 300, 100)]
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            for part in rounds:
                await send_all(store, table, part)
                await store.drain()
            stats = store.stats().tables[table]
            assert (stats.rows_written, stats.spool_rows, stats.spool_files) == (300, 0, 0)
    if memory_rows < 100:
        assert spooled_batches(table) - before == 3  # every batch went through the disk
    assert list((tmp_path / "spool" / table).glob("*.batch")) == []
    with connect_db(db_url) as db:
        assert db.counts()[table] == 300
        if table == "trades":
            assert db.fetch_rows("trades") == sorted(rows)


async def test_exit_writes_batches_spooled_while_the_database_is_up(
    db_url: str, make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    # The gatherer's clean stop: a batch spilled by the memory bound is written within the
    # grace, not left for the next run.
    cfg = make_cfg(batch_size=300, flush_interval=3600, memory_rows=100)
    markets = [market(i) for i in range(300)]
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            await send_all(store, "markets", markets)
            await trio.testing.wait_all_tasks_blocked()
        stats = store.stats().tables["markets"]
    assert (stats.rows_written, stats.spool_rows, stats.spool_files, stats.queue_rows) == (
        300,
        0,
        0,
        0,
    )
    assert list((tmp_path / "spool" / "markets").glob("*.batch")) == []
    with connect_db(db_url) as db:
        assert db.counts()["markets"] == 300


async def test_exit_at_once_writes_an_earlier_spool(
    db_url: str, make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    # Spooled by a store whose database was down; the next store exits before its flushers
    # ran: the shutdown writes the spool within the grace, lowest first.
    cfg = make_cfg(batch_size=100, flush_interval=3600, memory_rows=0, grace=5)
    trades = [trade(i) for i in range(250)]
    with trio.fail_after(30):
        async with open_store("postgresql://postgres@127.0.0.1:1/kalshi", cfg) as store:
            await send_all(store, "trades", trades)
    assert store.stats().tables["trades"].spool_files == 3
    moved(tmp_path / "spool", db_url)
    with trio.fail_after(30):
        async with open_store(db_url, cfg) as store:
            pass
    stats = store.stats().tables["trades"]
    assert (stats.rows_written, stats.spool_rows, stats.spool_files) == (250, 0, 0)
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(trades)


async def test_a_write_in_flight_at_cancellation_is_counted_once(
    db_url: str, make_cfg: Callable[..., StoreConfig]
) -> None:
    # A flusher cancelled while the database works on its batch: the write finishes within
    # the grace and is counted; abandoned, it would commit unseen and be written again at
    # shutdown (the database holding rows the printed count never saw).
    trades = [trade(i) for i in range(100)]
    cfg = make_cfg(batch_size=100, flush_interval=3600)
    with connect_db(db_url) as locker, connect_db(db_url) as watcher:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
        with trio.fail_after(30), trio.CancelScope() as scope:
            async with open_store(db_url, cfg, watermark=False) as store:
                await send_all(store, "trades", trades)
                while not watcher.query(  # noqa: ASYNC110 - the write waits in the server
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                ):
                    await trio.sleep(0.01)
                scope.cancel()  # as Ctrl-C would, the batch's write in flight
                locker.execute("ROLLBACK")  # before the cancellation is delivered
                await trio.sleep_forever()
    assert scope.cancelled_caught
    stats = store.stats().tables["trades"]
    assert (stats.rows_written, stats.rows_duplicate, stats.batches) == (100, 0, 1)
    assert (stats.queue_rows, stats.spool_rows) == (0, 0)
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(trades)


async def test_the_memory_bound_holds_for_all_tables_together(
    make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    """``spool.memory_rows`` bounds the rows in sealed batches in memory summed over the
    tables (issue 20, the memory budget: per table, 7 tables could hold 7 times it). The
    database is unreachable; 250 trades and 250 markets rows seal two batches of 100 each
    (50 in each open batch): 400 sealed rows against a bound of 300, so one batch of 100
    goes to the spool (per table before: none)."""
    cfg = make_cfg(batch_size=100, flush_interval=3600, memory_rows=300, grace=5)
    with trio.fail_after(30):
        async with open_store("postgresql://postgres@127.0.0.1:1/kalshi", cfg) as store:
            await send_all(store, "trades", [trade(i) for i in range(250)])
            await send_all(store, "markets", [market(i) for i in range(250)])

            def settled() -> bool:
                tables = store.stats().tables
                held = sum(tables[t].queue_rows for t in ("trades", "markets"))
                spooled = sum(tables[t].spool_rows for t in ("trades", "markets"))
                return (held, spooled) == (400, 100)

            await wait_until(settled)
    assert len(list((tmp_path / "spool").glob("*/*.batch"))) == 6  # all, at the exit


async def test_a_producer_that_waits_for_room_spills_nothing(
    db_url: str, make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    """``Store.room_for`` (the replay's hand-over): 3 000 rows handed 100 at a time as fast
    as the store takes them stay within ``spool.memory_rows`` (300) in memory, none goes
    through the spool, and every row is committed once."""
    cfg = make_cfg(batch_size=100, flush_interval=3600, memory_rows=300)
    rows: list[Row] = [trade(i) for i in range(3_000)]
    before = spooled_batches("trades")
    held: list[int] = []
    with trio.fail_after(60):
        async with open_store(db_url, cfg, watermark=False, copy_new=True) as store:
            async with store.sender("trades") as send:
                for start in range(0, len(rows), 100):
                    await store.room_for(100)
                    await send.send_batch(rows[start : start + 100])
                    held.append(store.stats().tables["trades"].queue_rows)
            await store.drain()
            stats = store.stats().tables["trades"]
    assert max(held) <= 300
    assert spooled_batches("trades") == before
    assert (stats.rows_written, stats.spool_rows, stats.spool_files, stats.queue_rows) == (
        3_000,
        0,
        0,
        0,
    )
    assert list((tmp_path / "spool" / "trades").glob("*.batch")) == []
    with connect_db(db_url) as db:
        assert db.fetch_rows("trades") == sorted(rows)


async def test_room_for_does_not_wait_while_the_database_is_down(
    make_cfg: Callable[..., StoreConfig], tmp_path: Path
) -> None:
    """With the database unreachable, ``Store.room_for`` stops holding the producer back
    once a write found it down: the rows past the memory bound go to the spool, as every
    producer's do, and at the exit all 250 are on disk."""
    cfg = make_cfg(batch_size=100, flush_interval=3600, memory_rows=100, grace=5)
    with trio.fail_after(30):
        async with open_store("postgresql://postgres@127.0.0.1:1/kalshi", cfg) as store:
            async with store.sender("trades") as send:
                for start in range(0, 250, 50):
                    await store.room_for(50)
                    await send.send_batch([trade(i) for i in range(start, start + 50)])
            assert store.stats().db_up is False
        stats = store.stats().tables["trades"]
    assert (stats.spool_rows, stats.spool_files, stats.queue_rows) == (250, 3, 0)
    assert len(list((tmp_path / "spool" / "trades").glob("*.batch"))) == 3
