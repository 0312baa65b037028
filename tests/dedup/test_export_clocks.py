"""The S3 export closes windows by what each gatherer committed, never by comparing clocks,
and rows that reach production after their window was exported are exported again, so that
S3 holds every production row exactly once (issue 18, item 6). Real PostgreSQL, a real S3
server (weed), gatherers whose clocks are 90 s ahead and 90 s behind."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from dedup_support import dedup_config, skewed_recordings, watermark_at_middle, write_all

from kalshi.config import S3Config, parse_duration
from kalshi.dedup import metrics
from kalshi.dedup.export import ALL_WINDOWS, EXPORT_TABLES, Exporter
from kalshi.dedup.parquet import integer_times
from kalshi.dedup.service import Deduplicator
from kalshi.models.rows import TABLE_COLUMNS
from kalshi.store import connect_db
from kalshi.testing.recording import Recording, make_truth
from kalshi.testing.s3server import S3Server

SECOND = 1_000_000
SKEWS = {"g0": 0, "g1": 90 * SECOND, "g2": -90 * SECOND}
"""Each gatherer's clock against the exchange's (its receipts are stamped by it)."""
MARK = 2**62  # a watermark past every receipt: everything committed


def s3_config(server: S3Server, bucket: str) -> S3Config:
    return server.config(bucket, window=parse_duration("100ms"))


def skewed(seed: int) -> list[Recording]:
    return skewed_recordings(make_truth(seed, events=320), SKEWS)


HELD = ("trades", "tickers")
"""Tables whose rows received after the cut are held back (in ``held_<table>``) until
:func:`commit_all`: the deduplicator reads them by commit, so a row present is a row
committed; the order books go by the watermark."""


def commit_half(urls: dict[str, str]) -> dict[str, int]:
    """Each gatherer has committed what it received up to the middle of its recording, and
    says so in its own clock (its watermark); returns those cuts (µs, its clock)."""
    cuts = watermark_at_middle(urls)
    for gid, url in urls.items():
        with connect_db(url) as db:
            for table in HELD:
                db.execute(
                    f"CREATE TABLE held_{table} AS SELECT * FROM {table} WHERE received_at > %s",
                    (cuts[gid],),
                )
                db.execute(f"DELETE FROM {table} WHERE received_at > %s", (cuts[gid],))
    return cuts


def commit_all(urls: dict[str, str]) -> None:
    """The held rows are committed (new transactions: a new ``ingest_xid``), and every
    gatherer says it has committed everything."""
    for url in urls.values():
        with connect_db(url) as db:
            for table in HELD:
                columns = ", ".join(TABLE_COLUMNS[table])
                db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM held_{table}")
            db.execute("UPDATE ingest_watermark SET complete_before = %s", (MARK,))


async def merge(production: str, urls: dict[str, str]) -> Deduplicator:
    """One `dedup --once` pass; returns the (closed) deduplicator, for its health."""
    dedup = Deduplicator(dedup_config(production, urls))
    try:
        await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    return dedup


async def first_round(
    make_db: Callable[..., str], tmp_path: Path, seed: int
) -> tuple[dict[str, str], dict[str, int], str, Deduplicator]:
    """Three gatherers (:data:`SKEWS`) record ``seed``'s truth and commit half of it
    (:func:`commit_half`); one pass merges that into a new production database. Returns the
    gatherers' URLs, their cuts, production's URL and the pass's deduplicator."""
    urls = await write_all(make_db, skewed(seed), tmp_path)
    cuts = commit_half(urls)
    production = make_db()
    dedup = await merge(production, urls)
    return urls, cuts, production, dedup


async def second_round(production: str, urls: dict[str, str]) -> None:
    """The rest is committed (:func:`commit_all`) and merged in one more pass."""
    commit_all(urls)
    await merge(production, urls)


def s3_tables(files: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every Parquet part in the bucket, per table."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in EXPORT_TABLES}
    for key, data in files.items():
        if key.endswith(".parquet"):
            out[key.split("/")[1]] += integer_times(pq.read_table(io.BytesIO(data))).to_pylist()
    return out


def assert_s3_is_production_once(production: str, files: dict[str, bytes]) -> dict[str, int]:
    """S3 holds every production row of the exported tables exactly once (the book stream:
    every merged delta once); returns the row counts compared."""
    got = s3_tables(files)
    counts = {}
    with connect_db(production) as db:
        for table in EXPORT_TABLES:
            if table == "orderbook_deltas":
                expected = Counter(db.query("SELECT ticker, seq FROM orderbook_deltas"))
                seen = Counter((r["ticker"], r["seq"]) for r in got[table] if r["kind"] == "delta")
            else:
                expected = Counter(tuple(r) for r in db.fetch_rows(table))
                seen = Counter(tuple(r.values()) for r in got[table])
            assert seen == expected, table
            counts[table] = sum(seen.values())
    return counts


def exports_of(production: str) -> dict[str, tuple[int, int, int]]:
    """Per table: windows recorded, how many partial, rewrites; and no window left stale."""
    with connect_db(production) as db:
        rows = db.query(
            "SELECT table_name, count(*), count(*) FILTER (WHERE partial), sum(rewrites)"
            " FROM dedup_exports GROUP BY 1"
        )
        assert db.query("SELECT count(*) FROM dedup_exports WHERE stale")[0][0] == 0
    return {t: (int(n), int(p), int(r)) for t, n, p, r in rows}


def complete_before(urls: dict[str, str], cuts: dict[str, int]) -> int:
    """The exchange time before which every gatherer has committed all it has: the
    earliest exchange time of a row any gatherer received after its cut (its own clock)."""
    firsts = []
    for gid, url in urls.items():
        with connect_db(url) as db:
            for table in ("trades", "orderbook_deltas", "tickers"):
                rows = f"(SELECT * FROM {table}" + (
                    f" UNION ALL SELECT * FROM held_{table})" if table in HELD else ")"
                )
                (first,) = db.query(
                    f"SELECT min(exchange_ts) FROM {rows} AS r WHERE received_at >= %s",
                    (cuts[gid],),
                )[0]
                if first is not None:
                    firsts.append(int(first))
    return min(firsts)


async def test_windows_close_by_what_each_gatherer_committed_with_clocks_90s_apart(
    make_db: Callable[..., str], tmp_path: Path, s3_server: S3Server
) -> None:
    # g1's clock is 90 s ahead, g2's 90 s behind. Closing windows by the cursors (receipts,
    # each in its own clock) let g1's close every window while half of the rows were still
    # to come; now a window closes when every gatherer's committed watermark, as exchange
    # time through its own rows, has passed it: nothing exported is ever rewritten.
    urls, cuts, production, dedup = await first_round(make_db, tmp_path, 41)
    s3 = s3_config(s3_server, "export-clocks-closing")
    exporter = Exporter(production, s3)
    try:
        first = await exporter.export_closed()
        complete = complete_before(urls, cuts)
        print(f"first: {len(first)} windows, complete before {complete}")
        assert first and all(e.end <= complete for e in first)
        assert {e.table for e in first} == {"trades", "tickers", "orderbook_snapshots", "gaps"}
        assert not any(e.partial for e in first)

        # /health: each gatherer's lag in its own clock (the receipt of its newest row of
        # the table less that of the newest the merge read: for the books, their cursor;
        # every keyed row committed is read), its clock's offset apart
        health = dedup.health()
        print(f"health: {health['lag_seconds']}, {health['gatherers']}")
        with connect_db(production) as db:
            cursors = db.query("SELECT gatherer_id, table_name, horizon FROM dedup_cursors")
        for gid, url in urls.items():
            with connect_db(url) as db:
                newest, offset = db.query(
                    "SELECT greatest(max(received_at), (SELECT max(snapshot_ts) FROM"
                    " orderbook_snapshots WHERE source = 'ws')), min(received_at - exchange_ts)"
                    " FROM orderbook_deltas"
                )[0]
            assert health["gatherers"][gid]["clock_offset_s"] == round(offset / SECOND, 3)
            for g, table, horizon in cursors:
                if g == gid:
                    lag = health["lag_seconds"][f"{gid}/{table}"]
                    if table == "orderbook_deltas":
                        assert lag == round(max(0, newest - horizon) / SECOND, 3)
                        assert lag < 1.0  # the recording lasts under a second, whatever the clock
                    else:
                        assert lag == 0, table
        assert [round(health["gatherers"][g]["clock_offset_s"]) for g in urls] == [0, 90, -90]
        for gid in urls:  # the same on /metrics
            gauge = metrics.CLOCK_OFFSET.labels(gid)._value.get()
            assert round(gauge, 3) == health["gatherers"][gid]["clock_offset_s"]

        await second_round(production, urls)
        survey = await exporter.survey()
        assert survey.rewrites == []  # the windows exported first were complete
        second = await exporter.export(survey.windows)
        counts = assert_s3_is_production_once(production, s3_server.objects(s3.bucket))
        print(f"second: {len(second)} windows; S3 = production: {counts}")
        # (the row received at a cut is not known committed: the watermark is exclusive)
        assert (len(first), len(second)) == (4, 16)
        assert counts == {
            "trades": 57,
            "orderbook_deltas": 222,
            "orderbook_snapshots": 7,
            "tickers": 29,
            "market_lifecycle": 0,
            "gaps": 4,
        }
        assert exports_of(production) == {
            t: (n, 0, 0) for t, n in Counter(e.table for e in first + second).items()
        }
    finally:
        exporter.close()


async def test_rows_that_reach_a_window_after_its_export_are_in_s3_exactly_once(
    make_db: Callable[..., str], tmp_path: Path, s3_server: S3Server
) -> None:
    # `--all-windows` exports every window while half of the rows are still in the
    # gatherers' writers: the windows not closed are recorded partial; when the rest is
    # merged, the windows that gained rows are rewritten, and S3 holds every row once.
    urls, _, production, _ = await first_round(make_db, tmp_path, 42)
    s3 = s3_config(s3_server, "export-clocks-late")
    exporter = Exporter(production, s3)
    try:
        first = await exporter.export_closed(until=ALL_WINDOWS)
        partial = [e for e in first if e.partial]
        await second_round(production, urls)
        before = s3_tables(s3_server.objects(s3.bucket))
        survey = await exporter.survey()
        again = await exporter.export(survey.windows)
        assert [(e.table, e.start) for e in again if e.rewrite] == survey.rewrites
        counts = assert_s3_is_production_once(production, s3_server.objects(s3.bucket))
        # rows of the windows exported first that S3 lacked until the rewrite
        with connect_db(production) as db:
            now = {
                t: sum(
                    db.query(
                        f"SELECT count(*) FROM {t} WHERE {EXPORT_TABLES[t]} >= %s"
                        f" AND {EXPORT_TABLES[t]} < %s",
                        (e.start, e.end),
                    )[0][0]
                    for e in first
                    if e.table == t
                )
                for t in EXPORT_TABLES
                if t != "orderbook_deltas"
            }
        late = {t: now[t] - len(before[t]) for t in now if now[t] != len(before[t])}
        print(
            f"{len(first)} windows first ({len(partial)} partial), rewritten"
            f" {survey.rewrites}, {len(again) - len(survey.rewrites)} new; late rows {late};"
            f" S3 = production: {counts}"
        )
        assert (len(first), len(partial), len(again)) == (12, 6, 11)
        # the last partial window of trades, tickers and the book stream gained rows
        assert Counter(t for t, _ in survey.rewrites) == {
            "trades": 1,
            "orderbook_deltas": 1,
            "tickers": 1,
        }
        assert late == {"trades": 6, "tickers": 1}
        recorded = exports_of(production)
        assert sum(r for _, _, r in recorded.values()) == len(survey.rewrites)
        assert (await exporter.survey()).windows == []  # nothing left to rewrite
    finally:
        exporter.close()


async def test_a_gatherer_back_after_an_outage_gets_its_late_rows_exported_once(
    make_db: Callable[..., str], tmp_path: Path, s3_server: S3Server, pg_server: Any
) -> None:
    # g2 (clock 90 s behind) cannot be reached while g0 and g1 (90 s ahead) are merged and
    # their windows exported; back, it brings trades and tickers nobody else kept, into
    # windows already in S3: those windows are rewritten, each row in S3 once.
    urls = await write_all(make_db, skewed(43), tmp_path)
    production = make_db()
    down = {**urls, "g2": pg_server.url_for("no_such_database")}
    dedup = await merge(production, down)
    assert dedup.health()["gatherers"]["g2"]["up"] is False
    s3 = s3_config(s3_server, "export-clocks-outage")
    exporter = Exporter(production, s3)
    try:
        first = await exporter.export_closed()
        await merge(production, urls)  # g2 is back
        survey = await exporter.survey()
        again = await exporter.export(survey.windows)
        counts = assert_s3_is_production_once(production, s3_server.objects(s3.bucket))
        rewrites = Counter(t for t, _ in survey.rewrites)
        print(
            f"outage: {len(first)} windows first, rewritten {dict(rewrites)},"
            f" {len(again) - len(survey.rewrites)} new; S3 = production: {counts}"
        )
        assert len(first) == 19
        assert rewrites == {"trades": 2, "tickers": 2}
        assert counts == {
            "trades": 44,
            "orderbook_deltas": 225,
            "orderbook_snapshots": 9,
            "tickers": 30,
            "market_lifecycle": 0,
            "gaps": 6,
        }
        recorded = exports_of(production)
        assert {t: r for t, (_, _, r) in recorded.items() if r} == dict(rewrites)
    finally:
        exporter.close()


async def test_an_exporter_stopped_after_marking_windows_stale_rewrites_them_next_time(
    make_db: Callable[..., str], tmp_path: Path, s3_server: S3Server
) -> None:
    # The touched times become stale marks in the transaction that deletes them; an
    # exporter that stops (kill -9) before rewriting leaves the marks, and the next one
    # rewrites exactly those windows.
    urls, _, production, _ = await first_round(make_db, tmp_path, 42)
    s3 = s3_config(s3_server, "export-clocks-stopped")
    exporter = Exporter(production, s3)
    try:
        await exporter.export_closed(until=ALL_WINDOWS)
        await second_round(production, urls)
        marked = await exporter._read(exporter._reader.mark_stale, exporter.tables, 100_000)
    finally:
        exporter.close()  # stopped before the rewrite
    with connect_db(production) as db:
        assert db.query("SELECT count(*) FROM dedup_touched")[0][0] == 0
        stale = db.query("SELECT count(*) FROM dedup_exports WHERE stale")[0][0]
    assert marked == stale > 0
    exporter = Exporter(production, s3)
    try:
        survey = await exporter.survey()
        assert Counter(t for t, _ in survey.rewrites) == {
            "trades": 1,
            "orderbook_deltas": 1,
            "tickers": 1,
        }  # as when nothing stopped (the test above, the same recording)
        await exporter.export(survey.windows)
    finally:
        exporter.close()
    assert_s3_is_production_once(production, s3_server.objects(s3.bucket))
    print(f"stopped after marking: {marked} windows stale, {len(survey.rewrites)} rewritten")
