"""Export to a real S3 server (and a directory): Parquet read back equals production."""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import logging
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
from dedup_support import MISSES, merge_once, recordings, write_all

from kalshi.book import OrderBook
from kalshi.config import S3Config, parse_duration
from kalshi.dedup import export as export_module
from kalshi.dedup import metrics
from kalshi.dedup.export import ALL_WINDOWS, EXPORT_TABLES, Exporter, WindowExport, _iso, _Reader
from kalshi.dedup.gatherers import SKEW_US
from kalshi.dedup.parquet import encode, integer_times
from kalshi.dedup.segments import apply_change
from kalshi.dedup.targets import S3Target
from kalshi.models.rows import TradeRow
from kalshi.store import connect_db
from kalshi.testing.recording import make_truth
from kalshi.testing.s3server import S3Server

_buckets = itertools.count(1)
EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples/duckdb_query.py"))
WINDOW = "100ms"


async def merged_production(make_db: Callable[..., str], tmp: Path, seed: int = 31) -> str:
    truth = make_truth(seed, events=320)
    urls = await write_all(make_db, recordings(truth, MISSES), tmp)
    production = make_db()
    await merge_once(production, urls)
    return production


def s3_config(server: S3Server, **changes: Any) -> S3Config:
    return server.config(f"dedup-export-{next(_buckets)}", window=parse_duration(WINDOW), **changes)


def local(out: Path, window: str = WINDOW) -> S3Config:
    """An export to the directory ``out``, windows of ``window``."""
    return S3Config(enabled=True, local_dir=str(out), window=parse_duration(window))


async def export_to(production: str, out: Path, **plan: Any) -> list[WindowExport]:
    """Every closed window of ``production`` exported to the directory ``out`` (``plan``:
    :meth:`Exporter.export_closed`'s ``until``, ``force``) by a fresh exporter."""
    exporter = Exporter(production, local(out))
    try:
        return await exporter.export_closed(**plan)
    finally:
        exporter.close()


def book_of_file(table: Any, ticker: str) -> OrderBook:
    """Rebuild one market's book from a book-stream file alone."""
    book = OrderBook(ticker)
    reset_at: tuple[str, int | None] | None = None
    for row in table.to_pylist():
        if row["ticker"] != ticker:
            continue
        if row["kind"] in ("start", "snapshot"):
            if reset_at != (row["kind"], row["seq"]):
                book, reset_at = OrderBook(ticker), (row["kind"], row["seq"])
            if row["price"] is not None:
                (book.yes if row["side"] else book.no)[row["price"]] = row["size"]
            continue
        reset_at = None
        apply_change(book, row["side"], row["price"], row["size"])
    return book


def check_against_production(
    production: str, files: dict[str, bytes], exports: list[WindowExport]
) -> None:
    reader = _Reader(production, target="")
    streamed: set[tuple[str, int]] = set()
    deltas = {(d.ticker, d.seq): d for d in reader.db.fetch_rows("orderbook_deltas")}
    try:
        for export in exports:
            manifest = json.loads(files[export.keys[-1]])
            assert manifest["window"]["start_us"] == export.start
            assert manifest["rows"] == export.rows
            assert [f["key"] for f in manifest["files"]] == list(export.keys[:-1])
            for entry in manifest["files"]:
                data = files[entry["key"]]
                assert hashlib.sha256(data).hexdigest() == entry["sha256"]
                assert len(data) == entry["bytes"]
                table = integer_times(pq.read_table(io.BytesIO(data)))
                assert table.num_rows == entry["rows"]
                column = EXPORT_TABLES[export.table]
                if export.table != "orderbook_deltas":
                    expected = reader.rows(export.table, column, export.start, export.end)
                    assert [tuple(r.values()) for r in table.to_pylist()] == [
                        tuple(r) for r in expected
                    ]
                    continue
                got = [r for r in table.to_pylist() if r["kind"] == "delta"]
                seen = [(r["ticker"], r["seq"]) for r in got]
                assert len(set(seen)) == len(seen)
                assert not set(seen) & streamed  # every delta in one window only
                streamed.update(seen)
                for r in got:
                    assert r["size"] == deltas[r["ticker"], r["seq"]].size_delta
                for ticker in {r["ticker"] for r in table.to_pylist()}:
                    last = max(r["seq"] or 0 for r in table.to_pylist() if r["ticker"] == ticker)
                    _, expected_book = reader.book_before(ticker, last + 1)
                    assert book_of_file(table, ticker) == expected_book, ticker
        # The windows cover every delta stamped before the last one's end, less the skew.
        ends = [e.end for e in exports if e.table == "orderbook_deltas"]
        if ends:
            covered = {k for k, d in deltas.items() if d.exchange_ts < max(ends) - SKEW_US}
            assert covered <= streamed
    finally:
        reader.close()


async def test_closed_windows_go_to_s3_as_parquet_equal_to_production(
    make_db: Callable[..., str], tmp_path: Path, s3_server: S3Server
) -> None:
    production = await merged_production(make_db, tmp_path)
    s3 = s3_config(s3_server)
    exporter = Exporter(production, s3)
    try:
        exports = await exporter.export_closed()
        with connect_db(production) as db:
            # closed: every live gatherer's merge has reached its end, by its cursor less
            # its own measured offset (`reached`, exchange time)
            horizon = db.query("SELECT min(reached) FROM dedup_cursors")[0][0]
            recorded = db.query("SELECT count(*) FROM dedup_exports")[0][0]
        files = s3_server.objects(s3.bucket)
        assert sorted(files) == sorted(k for e in exports for k in e.keys)
        assert recorded == len(exports)
        assert {e.table for e in exports} == set(EXPORT_TABLES) - {"market_lifecycle"}  # none
        assert all(e.end <= horizon for e in exports)
        assert await exporter.plan() == []  # nothing closed is left
        check_against_production(production, files, exports)

        # Re-export: the same objects, byte for byte (manifests aside), and nothing more.
        client = s3_server.client()
        junk = exports[0].keys[0].rsplit("/", 1)[0] + "/part-00009.parquet"
        client.put_object(Bucket=s3.bucket, Key=junk, Body=b"stale")
        again = await exporter.export_closed(force=True)
        assert [(e.table, e.start, e.rows) for e in again] == [
            (e.table, e.start, e.rows) for e in exports
        ]
        refiled = s3_server.objects(s3.bucket)
        assert sorted(refiled) == sorted(files)
        parts = [k for k in files if k.endswith(".parquet")]
        assert {k: refiled[k] for k in parts} == {k: files[k] for k in parts}
        with connect_db(production) as db:
            assert db.query("SELECT count(*) FROM dedup_exports")[0][0] == len(exports)
    finally:
        exporter.close()


async def test_a_bucket_object_is_read_back_and_a_missing_one_is_none(s3_server: S3Server) -> None:
    # what a new exporter reads of the markets export it published (tester F4)
    target = S3Target(s3_config(s3_server))
    await target.put("raw/markets/_manifest.json", b'{"rows": 2}')
    assert await target.get("raw/markets/_manifest.json") == b'{"rows": 2}'
    assert await target.get("raw/markets/nothing.json") is None


async def test_export_to_a_local_directory_reads_back_with_duckdb(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    production = await merged_production(make_db, tmp_path / "dbs", seed=32)
    exports = await export_to(production, tmp_path / "out")
    trades = [e for e in exports if e.table == "trades"]
    pattern = str(tmp_path / "out" / "raw" / "trades" / "**" / "*.parquet")
    got = duckdb.sql(
        f"SELECT trade_id FROM read_parquet('{pattern}', hive_partitioning = true) ORDER BY 1"
    ).fetchall()
    with connect_db(production) as db:
        expected = db.query(
            "SELECT trade_id FROM trades WHERE exchange_ts < %s ORDER BY 1", (trades[-1].end,)
        )
    assert got == expected
    assert len(got) == sum(e.rows for e in trades)
    assert not list((tmp_path / "out").rglob(".part-*"))


@pytest.fixture
def own_s3(tmp_path: Path) -> Any:
    server = S3Server(tmp_path / "s3")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_an_s3_outage_mid_export_is_retried_until_it_completes(
    make_db: Callable[..., str],
    tmp_path: Path,
    own_s3: S3Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """... and says so: one warning with the cause when it starts failing, its health
    down with that cause while it fails, one line when it works again (outside tester F3)."""
    caplog.set_level(logging.INFO, logger="kalshi.dedup.export")
    production = await merged_production(make_db, tmp_path, seed=33)
    s3 = s3_config(own_s3)
    target = S3Target(s3, attempts=200, backoff=0.05, max_backoff=0.2, multipart_threshold=1024)
    exporter = Exporter(production, s3, target)
    failures_before = metrics.EXPORT_FAILURES._value.get()
    restarted = trio.Event()

    during: dict[str, Any] = {}

    async def outage() -> None:
        await trio.to_thread.run_sync(own_s3.stop)
        for _ in itertools.count():  # until an attempt has failed
            if target.health.error:
                break
            await trio.sleep(0.05)
        during.update(target.health.document())
        await trio.to_thread.run_sync(own_s3.start)
        restarted.set()

    try:
        plan = await exporter.plan()
        async with trio.open_nursery() as nursery:

            def progress(done: WindowExport) -> None:
                if done.start == plan[0][1] and done.table == plan[0][0]:
                    nursery.start_soon(outage)  # the server goes away after the first window

            with trio.fail_after(120):
                exports = await exporter.export(plan, progress)
        assert restarted.is_set()
        assert [(e.table, e.start) for e in exports] == plan
        assert metrics.EXPORT_FAILURES._value.get() > failures_before
        assert during["up"] is False
        assert during["error"].startswith(f"cannot upload s3://{s3.bucket}/raw/")
        assert "Could not connect to the endpoint URL" in during["error"]
        assert during["failures"] >= 1
        assert target.health.document() == {
            "up": True,
            "error": "",
            "failures": 0,
            "target": f"s3://{s3.bucket}/",
        }
        said = [
            (r.levelname, r.getMessage())
            for r in caplog.records
            if r.name == "kalshi.dedup.export" and "export to" in r.getMessage()
        ]
        assert [level for level, _ in said] == ["WARNING", "INFO"]
        assert said[0][1].startswith(
            f"export to s3://{s3.bucket}/ failing, retrying: cannot upload"
        )
        assert said[1][1].startswith(f"export to s3://{s3.bucket}/ works again after ")
        check_against_production(production, own_s3.objects(s3.bucket), exports)
    finally:
        exporter.close()


async def test_until_closes_every_tables_windows_the_deltas_too(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    """`kalshi export --until T` exports every table's windows ending by T, order-book
    deltas included (they used to need T + 60 s), and says which table waits and why."""
    production = await merged_production(make_db, tmp_path / "dbs", seed=34)
    with connect_db(production) as db:
        newest = max(
            db.query(f"SELECT max({column}) FROM {table}")[0][0] or 0
            for table, column in EXPORT_TABLES.items()
        )
        counts = {
            table: db.query(f"SELECT count(*) FROM {table}")[0][0]
            for table in EXPORT_TABLES
            if table != "orderbook_deltas"
        }
    hour = 3_600_000_000
    end = newest - newest % hour + hour  # the end of the newest row's hour
    s3 = local(tmp_path / "out", "1h")
    exporter = Exporter(production, s3)
    try:
        early = await exporter.survey(until=end - 1)
        assert early.windows == []
        assert sorted(h.table for h in early.held) == sorted(
            [*(t for t, n in counts.items() if n), "orderbook_deltas"]
        )
        assert {h.reason() for h in early.held if h.table == "orderbook_deltas"} == {
            f"orderbook_deltas held back from {_iso(end - hour)}: its window ends at"
            f" {_iso(end)}, after --until"
        }
        # an --until past the merge cursors: one warning line, naming both
        cursors = early.cursors
        assert cursors is not None
        assert early.behind(cursors) is None
        assert early.behind(cursors + 1) == (
            f"the merge cursors are at {_iso(cursors)}, before --until {_iso(cursors + 1)}:"
            " rows received since are not merged yet and will not be in the windows exported"
            " now (those windows are rewritten once the rows are merged)"
        )
        exports = await exporter.export_closed(until=end)
        assert (await exporter.survey(until=end)).held == []
    finally:
        exporter.close()
    rows = {e.table: e.rows for e in exports}
    assert {t: n for t, n in rows.items() if t != "orderbook_deltas"} == {
        t: n for t, n in counts.items() if n
    }
    assert [(e.table, e.start) for e in exports] == [(t, end - hour) for t in rows]
    # orderbook_deltas: the rows of its merged book stream (docs/dedup.md)
    assert rows == {
        "trades": 52,
        "orderbook_deltas": 338,
        "orderbook_snapshots": 8,
        "tickers": 35,
        "gaps": 5,
    }


async def test_a_directory_after_s3_gets_every_window_and_the_example_reads_it(
    make_db: Callable[..., str],
    tmp_path: Path,
    s3_server: S3Server,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Outside tester (item 10): `kalshi export --local-dir /tmp/exp --all-windows` after an
    # S3 export said "no closed window to export" (what was exported was recorded for S3
    # only); and examples/duckdb_query.py --dir /tmp/exp found only a table "raw".
    production = await merged_production(make_db, tmp_path / "dbs", seed=33)
    s3 = s3_config(s3_server)
    directory = local(tmp_path / "exp")
    done = {}
    for name, cfg in (("s3", s3), ("dir", directory), ("s3 again", s3), ("dir again", directory)):
        exporter = Exporter(production, cfg)
        try:
            done[name] = [
                (e.table, e.start, e.rows) for e in await exporter.export_closed(until=ALL_WINDOWS)
            ]
        finally:
            exporter.close()
    assert len(done["s3"]) == 19
    assert done["dir"] == done["s3"]
    assert done["s3 again"] == done["dir again"] == []
    with connect_db(production) as db:
        assert db.query("SELECT target, count(*) FROM dedup_exports GROUP BY 1 ORDER BY 1") == [
            (str(tmp_path / "exp" / "raw"), 19),
            (f"s3://{s3.bucket}/raw/", 19),
        ]
        (trades,) = db.query("SELECT count(*) FROM trades")[0]
    assert trades == sum(rows for table, _, rows in done["dir"] if table == "trades")
    for where in (tmp_path / "exp", tmp_path / "exp" / "raw"):  # the export's dir, or raw/
        assert EXAMPLE["main"](["--dir", str(where), "SELECT count(*) AS n FROM trades"]) == 0
        assert capsys.readouterr().out == f"n\n{trades}\n"


def test_parquet_times_are_utc_microsecond_timestamps_with_units(tmp_path: Path) -> None:
    """Outside tester F5: times are timestamp[us, tz=UTC] (µs kept exactly), and the file
    names every unit; pyarrow and duckdb read the same exact values."""
    trade = TradeRow(
        exchange_ts=1_796_144_994_766_946,
        received_at=1_796_144_994_801_003,
        gatherer_id="ga",
        ticker="KXHIGHNY-26DEC01-T60",
        trade_id="t-1",
        price=42_000,
        size=13_600,
        taker_side=True,
        is_block_trade=False,
        source="ws",
        conn_id=7,
        frame_no=9,
        seq=3,
    )
    path = tmp_path / "part-00000.parquet"
    path.write_bytes(encode("trades", [trade]))
    table = pq.read_table(path)
    utc_us = pa.timestamp("us", tz="UTC")
    assert (table.schema.field("exchange_ts").type, table.schema.field("received_at").type) == (
        utc_us,
        utc_us,
    )
    assert table.schema.field("price").metadata == {
        b"unit": b"hundred-thousandths of a dollar (42000 = $0.42, 100000 = $1)"
    }
    units = json.loads(table.schema.metadata[b"kalshi.units"])
    assert units["size"] == "hundredths of a contract (13600 = 136.00 contracts)"
    assert units["exchange_ts"] == "microseconds since the Unix epoch, UTC"
    assert integer_times(table).to_pylist() == [trade._asdict()]
    got = duckdb.sql(
        "SELECT epoch_us(exchange_ts), epoch_us(received_at), typeof(exchange_ts),"
        f" strftime(exchange_ts AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f'), price, size"
        f" FROM read_parquet('{path}')"
    ).fetchall()
    assert got == [
        (
            1_796_144_994_766_946,
            1_796_144_994_801_003,
            "TIMESTAMP WITH TIME ZONE",
            "2026-12-01 17:09:54.766946",
            42_000,
            13_600,
        )
    ]


async def test_markets_table_is_exported_whole_with_strikes_and_result(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    """Outside tester D2: the markets (strikes, result, status) go out too, to read the rest."""
    production = make_db()
    payload = (
        '{"ticker":"KXHIGHNY-26DEC01-T60","status":"finalized","result":"no",'
        '"strike_type":"greater","floor_strike":60,"settlement_value_dollars":"0.0000"}'
    )
    insert = "INSERT INTO markets VALUES (%s, %s, %s, 'binary', %s, %s, %s, %s, 'ga', %s)"
    row = (
        "KXHIGHNY-26DEC01-T60",
        "KXHIGHNY-26DEC01",
        "finalized",
        "Will the high be >60°?",
        1_796_083_200_000_000,
        1_796_144_994_766_946,
        1_796_145_278_485_218,
        payload,
    )
    with connect_db(production) as db:
        db.execute(insert, row)
    s3 = local(tmp_path / "out")
    clock = [1_796_145_300_000_000]
    exporter = Exporter(production, s3, wall_us=lambda: clock[0])
    try:
        assert await exporter.export_markets() == 1
        part = tmp_path / "out" / "raw" / "markets" / "part-00000.parquet"
        table = pq.read_table(part)
        assert table.schema.field("close_time").type == pa.timestamp("us", tz="UTC")
        assert integer_times(table).to_pylist() == [
            {
                "ticker": "KXHIGHNY-26DEC01-T60",
                "event_ticker": "KXHIGHNY-26DEC01",
                "status": "finalized",
                "market_type": "binary",
                "title": "Will the high be >60°?",
                "open_time": 1_796_083_200_000_000,
                "close_time": 1_796_144_994_766_946,
                "updated_at": 1_796_145_278_485_218,
                "gatherer_id": "ga",
                "payload": table.column("payload")[0].as_py(),
                "result": "no",
                "strike_type": "greater",
                "floor_strike": "60",
                "cap_strike": None,
                "settlement_value": "0.0000",
            }
        ]
        got = duckdb.sql(
            f"SELECT ticker, epoch_us(close_time), floor_strike FROM read_parquet('{part}')"
        ).fetchall()
        assert got == [("KXHIGHNY-26DEC01-T60", 1_796_144_994_766_946, "60")]
        with connect_db(production) as db:
            db.execute("UPDATE markets SET updated_at = updated_at + 1")
        clock[0] += 99_999  # changed, but the last export is less than a window old
        assert await exporter.export_markets() is None
        clock[0] += 1
        assert await exporter.export_markets() == 1
        clock[0] += 200_000  # two windows later
        assert await exporter.export_markets() is None  # unchanged: not written again
        manifest = json.loads((part.parent / "_manifest.json").read_text())
        assert (manifest["rows"], manifest["updated_until_us"]) == (1, 1_796_145_278_485_219)
    finally:
        exporter.close()
    # A new exporter (each `dedup --once`, tester F4) takes the published manifest as the
    # last export: unchanged markets are not written again, changed ones are; --force writes.
    for force, changed, written in ((False, False, None), (True, False, 1), (False, True, 1)):
        if changed:
            with connect_db(production) as db:
                db.execute("UPDATE markets SET updated_at = updated_at + 1")
        again = Exporter(production, s3, wall_us=lambda: clock[0])
        try:
            assert await again.export_markets(force=force) == written
        finally:
            again.close()
    manifest = json.loads((part.parent / "_manifest.json").read_text())
    assert (manifest["rows"], manifest["updated_until_us"]) == (1, 1_796_145_278_485_220)


@pytest.mark.parametrize(("markets", "parts"), [(5, [[2, 1], [2]]), (6, [[2, 1], [2, 1]])])
async def test_markets_export_holds_one_read_step_of_rows(
    make_db: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    markets: int,
    parts: list[list[int]],
) -> None:
    """The markets table is read MARKETS_READ_ROWS rows at a time, each step one row group
    (the rows held at once), never the whole table (250 000 markets made the deduplicator's
    peak RSS ~2.5 GiB); parts still hold up to PART_ROWS rows, in ticker order."""
    monkeypatch.setattr(export_module, "MARKETS_READ_ROWS", 2)
    monkeypatch.setattr(export_module, "PART_ROWS", 3)
    production = make_db()
    insert = "INSERT INTO markets VALUES (%s, 'EV', 'active', 'binary', 't', 1, 2, 3, 'ga', '{}')"
    tickers = [f"M-{i}" for i in range(markets)]
    with connect_db(production) as db:
        for ticker in reversed(tickers):
            db.execute(insert, (ticker,))
    s3 = local(tmp_path / "out")
    exporter = Exporter(production, s3, wall_us=lambda: 1_796_145_300_000_000)
    try:
        assert await exporter.export_markets() == markets
        base = tmp_path / "out" / "raw" / "markets"
        files = [pq.ParquetFile(base / f"part-{i:05d}.parquet") for i in range(len(parts))]
        groups = [
            [f.metadata.row_group(g).num_rows for g in range(f.metadata.num_row_groups)]
            for f in files
        ]
        assert groups == parts
        read = [t for f in files for t in f.read().column("ticker").to_pylist()]
        assert read == tickers
        manifest = json.loads((base / "_manifest.json").read_text())
        assert manifest["rows"] == markets
        assert [f["rows"] for f in manifest["files"]] == [sum(p) for p in parts]
        assert sorted(p.name for p in base.iterdir()) == sorted(
            ["_manifest.json", *(f"part-{i:05d}.parquet" for i in range(len(parts)))]
        )
    finally:
        exporter.close()


async def test_a_window_is_read_and_written_one_step_of_rows_at_a_time(
    make_db: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window of a keyed table is read READ_ROWS rows at a time through a server-side
    cursor, each step one row group (the rows held at once), parts still of up to
    PART_ROWS rows; what the parts hold is the window's rows in key order, exactly."""
    monkeypatch.setattr(export_module, "READ_ROWS", 2)
    monkeypatch.setattr(export_module, "PART_ROWS", 3)
    production = await merged_production(make_db, tmp_path / "dbs", seed=32)
    exports = await export_to(production, tmp_path / "out")
    keyed = [e for e in exports if e.table != "orderbook_deltas"]
    assert max(e.rows for e in keyed) > 3  # some window takes several parts
    reader = _Reader(production, target="")
    try:
        for e in keyed:
            files = [pq.ParquetFile(tmp_path / "out" / k) for k in e.keys[:-1]]
            parts = [f.metadata.num_rows for f in files]
            groups = [
                f.metadata.row_group(g).num_rows
                for f in files
                for g in range(f.metadata.num_row_groups)
            ]
            assert all(p == 3 for p in parts[:-1]) and 0 <= parts[-1] <= 3
            assert sum(parts) == e.rows
            assert all(g <= 2 for g in groups)
            got = [tuple(r.values()) for f in files for r in integer_times(f.read()).to_pylist()]
            column = EXPORT_TABLES[e.table]
            expected = reader.rows(e.table, column, e.start, e.end)
            assert got == [tuple(r) for r in expected]
    finally:
        reader.close()


async def test_a_book_stream_window_is_read_and_written_one_step_at_a_time(
    make_db: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The book stream's window is read READ_ROWS deltas and snapshots at a time, by
    (ticker, seq) through two server-side cursors merged, each step one row group of the
    window's one part: the same rows in the same order, and the same digest, as the
    window read in one step, and every market's book rebuilt from a file is production's."""
    production = await merged_production(make_db, tmp_path / "dbs", seed=32)
    read: dict[int, list[list[dict[str, Any]]]] = {}
    groups: dict[int, list[int]] = {}
    for step in (1_000_000, 2):
        monkeypatch.setattr(export_module, "READ_ROWS", step)
        out = tmp_path / f"out-{step}"
        exports = await export_to(production, out, until=ALL_WINDOWS)
        exports = [e for e in exports if e.table == "orderbook_deltas"]
        files = {k: (out / k).read_bytes() for e in exports for k in e.keys}
        check_against_production(production, files, exports)
        read[step], groups[step] = [], []
        for e in exports:
            assert len(e.keys) == 2  # one part, then the manifest
            part = pq.ParquetFile(out / e.keys[0])
            rows = integer_times(part.read()).to_pylist()
            # the stream rows read: every delta, and each snapshot once (one row a level)
            stream = len({(r["ticker"], r["seq"]) for r in rows if r["kind"] != "start"})
            assert part.metadata.num_row_groups == -(-stream // min(step, stream))
            groups[step].append(part.metadata.num_row_groups)
            read[step].append(rows)
    assert read[2] == read[1_000_000]
    kinds = collections.Counter(r["kind"] for rows in read[2] for r in rows)
    assert dict(kinds) == {"start": 218, "snapshot": 114, "delta": 219}
    assert groups == {1_000_000: [1, 1, 1, 1, 1], 2: [24, 26, 27, 27, 10]}
    with connect_db(production) as db:
        digests = db.query(
            "SELECT window_start, count(*), count(DISTINCT digest) FROM dedup_exports"
            " WHERE table_name = 'orderbook_deltas' GROUP BY 1 ORDER BY 1"
        )
    assert {(n, distinct) for _, n, distinct in digests} == {(2, 1)}
