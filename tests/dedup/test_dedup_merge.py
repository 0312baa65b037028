"""The merge against real PostgreSQL: gatherer databases written by the real store with the
rows the real pipeline made of a scripted exchange's frames, each gatherer missing
different stretches."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import trio
from dedup_support import (
    MISSES,
    assert_production_is_truth,
    dedup_config,
    merge_once,
    production_books,
    recordings,
    skewed_recordings,
    watermark_at_middle,
    write_all,
    write_recording,
)

from kalshi.book import OrderBook
from kalshi.config import GathererConfig, SpoolConfig, parse_duration
from kalshi.dedup.service import Deduplicator, _holes_summary
from kalshi.errors import StoreError
from kalshi.models.rows import MarketRow, TickerRow, TradeRow
from kalshi.models.units import format_rfc3339_us
from kalshi.store import EmbeddedPostgres, connect_db, open_store
from kalshi.testing.recording import (
    T0,
    Event,
    Recording,
    Truth,
    covered,
    holes,
    make_truth,
    record,
    split,
)


async def test_three_gatherers_merge_into_the_truth_once(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(11, events=320)
    urls = await write_all(make_db, recordings(truth, MISSES), tmp_path)
    production = make_db()
    dedup = Deduplicator(dedup_config(production, urls, batch_size=37))
    try:
        report = await dedup.run_pass(settle_us=0)
        assert report.holes == len(holes(truth, list(MISSES.values())))
        assert report.switches > 0
        assert_production_is_truth(production, truth, MISSES)
        again = await dedup.run_pass(settle_us=0)
        assert sum(again.merged.values()) == 0
    finally:
        dedup.close()
    assert_production_is_truth(production, truth, MISSES)


async def test_passes_over_growing_databases_end_in_the_same_truth(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(12, events=320)
    cuts = [truth.events[i].exchange_ts for i in (50, 62, 120, 210, 228, 290)]
    recs = {r.gatherer_id: split(r, cuts) for r in recordings(truth, MISSES)}
    urls = {gid: make_db() for gid in recs}
    production = make_db()
    # The wall clock of each pass: just before the part's last rows were received, so that
    # its horizon (the wall clock in each gatherer's clock: later by its offset, under 1 ms
    # here) stays within what the gatherers have written (settle 0).
    walls = [c - 1000 for c in cuts] + [truth.events[-1].exchange_ts + 10_000]
    wall = [0]
    dedup = Deduplicator(dedup_config(production, urls, batch_size=10), wall_us=lambda: wall[0])
    try:
        for part in range(len(cuts) + 1):
            for gid, parts in recs.items():
                await write_recording(urls[gid], parts[part], tmp_path / gid)
            wall[0] = walls[part]
            await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    assert_production_is_truth(production, truth, MISSES)


def _only(misses: dict[str, list[tuple[int, int, str]]], *ids: str) -> dict[str, list]:  # type: ignore[type-arg]
    return {g: m for g, m in misses.items() if g in ids}


async def test_unreachable_gatherer_is_skipped_then_caught_up(
    make_db: Callable[..., str], pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    truth = make_truth(13, events=320)
    recs = recordings(truth, MISSES)
    urls = await write_all(make_db, recs[:2], tmp_path)
    late = f"dedup_late_{os.getpid()}"
    urls["g2"] = pg_server.url_for(late)  # not created yet: connecting fails
    production = make_db()
    dedup = Deduplicator(dedup_config(production, urls))
    try:
        # before a pass nothing answered: unknown, which is not up (tester F2)
        before = dedup.health()
        assert before["status"] == "degraded"
        assert before["production"] == {"up": None, "error": ""}
        assert [g["up"] for g in before["gatherers"].values()] == [None, None, None]
        report = await dedup.run_pass(settle_us=0)
        assert report.skipped == ["g2"]
        assert dedup.health()["production"] == {"up": True, "error": ""}
        assert dedup.health()["gatherers"]["g2"]["up"] is False
        assert_production_is_truth(production, truth, _only(MISSES, "g0", "g1"))
        make_db(late)
        await write_recording(urls["g2"], recs[2], tmp_path / "g2")
        report = await dedup.run_pass(settle_us=0)
        assert report.skipped == []
        assert dedup.health()["gatherers"]["g2"]["up"] is True
    finally:
        dedup.close()
    # Trades and tickers only g2 kept arrive; the order books were merged already.
    lists = list(MISSES.values())
    with connect_db(production) as db:
        trades = db.query("SELECT trade_id FROM trades ORDER BY trade_id")
    assert [t for (t,) in trades] == sorted(e.trade_id for e in covered(truth, lists, "trade"))
    assert production_books(production) == truth.books


async def test_a_lagging_gatherer_is_not_waited_for(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(14, events=320)
    recs = recordings(truth, MISSES)
    recs[2] = split(recs[2], [truth.events[100].exchange_ts])[0]  # g2 stopped at event 100
    urls = await write_all(make_db, recs, tmp_path)
    production = make_db()
    await merge_once(production, urls, max_lag=parse_duration("50ms"))
    pair = _only(MISSES, "g0", "g1")
    with connect_db(production) as db:
        deltas = db.query(
            "SELECT exchange_ts, ticker, side, price, size_delta FROM orderbook_deltas"
            " ORDER BY 1, 2, 3, 4, 5"
        )
        cursor = db.query(
            "SELECT horizon FROM dedup_cursors WHERE gatherer_id = 'g2'"
            " AND table_name = 'orderbook_deltas'"
        )
    assert deltas == sorted(
        (e.exchange_ts, e.ticker, e.side, e.price, e.size)
        for e in covered(truth, list(pair.values()), "delta")
    )
    assert production_books(production) == truth.books
    assert cursor == []  # g2's order books were left for later, not waited for


async def test_rows_received_late_reach_production_exactly_once(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # Kalshi frames have arrived 4-21 s late; a spooled batch arrives minutes late. The
    # cursor follows arrival, so a row is merged when it arrives, however old it is.
    t0 = 1_795_561_200_000_000
    second = 1_000_000

    def trade(name: str, exchange_s: int, received_s: int) -> TradeRow:
        return TradeRow(
            exchange_ts=t0 + exchange_s * second,
            received_at=t0 + received_s * second,
            gatherer_id="g0",
            ticker="MKT",
            trade_id=name,
            price=42_000,
            size=100,
            taker_side=True,
            is_block_trade=False,
            source="ws",
            conn_id=1,
            frame_no=received_s,
            seq=received_s,
        )

    def ticker(exchange_s: int, received_s: int) -> TickerRow:
        return TickerRow(
            exchange_ts=t0 + exchange_s * second,
            received_at=t0 + received_s * second,
            gatherer_id="g0",
            ticker="MKT",
            yes_bid=41_000,
            yes_ask=43_000,
            last_price=42_000,
            volume=100,
            open_interest=100,
            dollar_volume=1,
            dollar_open_interest=1,
            yes_bid_size=10,
            yes_ask_size=10,
            last_trade_size=1,
            conn_id=1,
            frame_no=received_s,
        )

    arrivals = [  # (rows, the wall clock of the pass after they were written)
        ([trade("on-time", 10, 10), ticker(10, 10)], 20),
        ([], 90),
        ([trade("20s-late", 81, 101), ticker(81, 101)], 110),
        ([], 130),
        ([trade("10min-late", 81, 681), ticker(82, 682)], 700),
        ([], 800),
    ]
    gatherer, production = make_db(), make_db()
    wall = [0]
    dedup = Deduplicator(dedup_config(production, {"g0": gatherer}), wall_us=lambda: wall[0])
    cfg = GathererConfig(
        gatherer_id="g0",
        spool=SpoolConfig(dir=str(tmp_path / "spool"), dead_letter_dir=str(tmp_path / "dead")),
    )
    try:
        for rows, at in arrivals:
            async with open_store(gatherer, cfg.store, watermark=False) as store:
                for row in rows:
                    table = "trades" if isinstance(row, TradeRow) else "tickers"
                    async with store.sender(table) as send:
                        await send.send(row)
                await store.committed()
            wall[0] = t0 + at * second
            await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    with connect_db(production) as db:
        assert db.query("SELECT trade_id, count(*) FROM trades GROUP BY 1 ORDER BY 1") == [
            ("10min-late", 1),
            ("20s-late", 1),
            ("on-time", 1),
        ]
        assert db.query("SELECT exchange_ts, count(*) FROM tickers GROUP BY 1 ORDER BY 1") == [
            (t0 + 10 * second, 1),
            (t0 + 81 * second, 1),
            (t0 + 82 * second, 1),
        ]


async def test_gatherer_clocks_off_by_minutes_lose_nothing(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # Issue 18 item 6: a gatherer clock 90 s behind left production with 0 of 3 530 deltas;
    # the deduplicator looked for rows received within a fixed 60 s of their exchange time.
    # Here g1 stamps receipts 90 s early and g2 20 s late (one machine's clock each).
    truth = make_truth(11, events=320)
    skews = {"g0": 0, "g1": -90_000_000, "g2": 20_000_000}
    urls = await write_all(make_db, skewed_recordings(truth, skews), tmp_path)
    # Each gatherer says (in its own clock) that it has committed everything received
    # before the middle of the recording: the first pass stops there, the second goes on.
    watermark_at_middle(urls)
    production = make_db()
    dedup = Deduplicator(dedup_config(production, urls, batch_size=37))
    try:
        first = await dedup.run_pass(settle_us=0)
        for url in urls.values():
            with connect_db(url) as db:
                db.execute("UPDATE ingest_watermark SET complete_before = %s", (2**62,))
        second = await dedup.run_pass(settle_us=0)
        assert first.holes + second.holes == len(holes(truth, list(MISSES.values())))
    finally:
        dedup.close()
    assert_production_is_truth(production, truth, MISSES)


async def test_once_right_after_a_gatherer_with_a_clock_ahead_stopped_copies_every_trade(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # Issue 18 item 6: with a gatherer clock 20 s ahead, `dedup --once` left out the trades
    # it received in the last 20 s (by its clock): they looked newer than the
    # deduplicator's now. The keyed tables now settle in the gatherer's own clock.
    from kalshi.testing.recording import record

    truth = make_truth(11, events=320)
    misses = _only(MISSES, "g0")
    rec = record(truth, "g0", misses["g0"], conn_base=1, latency_us=600 + 20_000_000)
    urls = await write_all(make_db, [rec], tmp_path)
    last = max(e.exchange_ts for e in truth.deltas())
    production = make_db()
    dedup = Deduplicator(
        dedup_config(production, urls, batch_size=37), wall_us=lambda: last + 1_000_000
    )
    try:
        await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    lists = list(misses.values())
    with connect_db(production) as db:
        trades = [t for (t,) in db.query("SELECT trade_id FROM trades ORDER BY trade_id")]
        tickers = db.query("SELECT ticker, exchange_ts, volume FROM tickers ORDER BY 1, 2, 3")
    assert trades == sorted(e.trade_id for e in covered(truth, lists, "trade"))
    assert tickers == sorted(
        (e.ticker, e.exchange_ts, 100 * e.index) for e in covered(truth, lists, "ticker")
    )


def _tables(rec: Recording, *tables: str) -> Recording:
    """``rec`` with only ``tables`` (the others empty): what a replay of some channels of
    its journal writes."""
    part = Recording(rec.gatherer_id)
    for table in tables:
        getattr(part, table).extend(getattr(rec, table))
    return part


async def test_rows_committed_after_the_merge_passed_their_receipt_are_merged_once(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # Outside tester (item 2): `kalshi replay` of the book and ticker channels into a
    # gatherer database, `dedup --once`, then a replay of the trade channel, `dedup --once`:
    # "trades 0 merged"; production held none of the 4,624 trades. The keyed cursor was a
    # receipt time, moved to the wall clock past rows not yet written. It is a commit
    # position now (ingest_xid): whatever is committed later is merged, exactly once.
    truth = make_truth(61, events=320)
    rec = record(truth, "gl")
    gatherer, production = make_db(), make_db()
    merged = []
    for tables in (
        ("orderbook_deltas", "orderbook_snapshots", "gaps", "tickers"),
        ("trades",),
        ("trades", "tickers"),  # the same again: a replay run twice
    ):
        await write_recording(gatherer, _tables(rec, *tables), tmp_path / "gl")
        report = await merge_once(production, {"gl": gatherer})  # a new --once
        merged.append({t: (n, report.duplicates[t]) for t, n in report.merged.items() if n})
    assert merged == [
        {"orderbook_deltas": (len(rec.orderbook_deltas), 0), "orderbook_snapshots": (3, 0),
         "tickers": (len(rec.tickers), 0)},
        {"trades": (len(rec.trades), 0)},
        {},
    ]  # fmt: skip
    assert (len(rec.trades), len(rec.tickers)) == (33, 38)
    assert_production_is_truth(production, truth, {"gl": []})


async def test_a_market_updated_after_the_merge_is_merged_again(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # markets rows are updated in place by the gatherer (newest updated_at wins): the update
    # is a new commit, so the deduplicator reads the new version, however old its time.
    t0 = 1_795_561_200_000_000

    def market(status: str, updated_at: int) -> MarketRow:
        return MarketRow(
            ticker="MKT",
            event_ticker="EV",
            status=status,
            market_type="binary",
            title="t",
            open_time=None,
            close_time=None,
            updated_at=updated_at,
            gatherer_id="g0",
            payload="{}",
        )

    gatherer, production = make_db(), make_db()
    cfg = GathererConfig(
        gatherer_id="g0",
        spool=SpoolConfig(dir=str(tmp_path / "spool"), dead_letter_dir=str(tmp_path / "dead")),
    )
    seen = []
    trade = TradeRow(
        exchange_ts=t0,
        received_at=t0,
        gatherer_id="g0",
        ticker="MKT",
        trade_id="t1",
        price=42_000,
        size=100,
        taker_side=True,
        is_block_trade=False,
        source="ws",
        conn_id=1,
        frame_no=1,
        seq=1,
    )
    for version in (market("active", t0 + 2), market("closed", t0 + 5), market("old", t0 + 1)):
        async with open_store(gatherer, cfg.store, watermark=False) as store:
            async with store.sender("trades") as send:  # a gatherer with market data
                await send.send(trade)
            async with store.sender("markets") as send:
                await send.send(version)
            await store.committed()
        await merge_once(production, {"g0": gatherer})
        with connect_db(production) as db:
            seen += db.query("SELECT status, updated_at FROM markets")
    assert seen == [("active", t0 + 2), ("closed", t0 + 5), ("closed", t0 + 5)]


async def test_a_database_holding_another_gatherers_rows_is_named_in_a_warning(
    make_db: Callable[..., str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Outside tester (item 3): `just demo` writes demo-1's rows into the database that
    # `just run-dedup` merges as local-1; an offline `kalshi gather` left a local-1
    # watermark there; the next demo's rows were not merged and nothing said why.
    truth = make_truth(62, events=320)
    rec = record(truth, "demo-1")
    gatherer, production = make_db(), make_db()
    await write_recording(
        gatherer, _tables(rec, "orderbook_deltas", "orderbook_snapshots"), tmp_path
    )
    mark = sorted(d.received_at for d in rec.orderbook_deltas)[100]
    with connect_db(gatherer) as db:  # what the offline gatherer's clean stop recorded
        db.execute(
            "INSERT INTO ingest_watermark (gatherer_id, complete_before, updated_at)"
            " VALUES ('local-1', %s, %s)",
            (mark, mark),
        )
    await write_recording(gatherer, _tables(rec, "trades", "tickers"), tmp_path)
    dedup = Deduplicator(dedup_config(production, {"local-1": gatherer}))
    try:
        report = await dedup.run_pass(settle_us=0)
        again = await dedup.run_pass(settle_us=0)
        health = dedup.health()["gatherers"]["local-1"]
    finally:
        dedup.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "kalshi.dedup"]
    assert warnings == [
        "gatherer local-1: its database holds the gatherer ids demo-1, local-1 (demo-1 no"
        f" watermark, local-1 watermark {format_rfc3339_us(mark)}), configured as local-1:"
        " every row is merged as one gatherer's, and its order books are merged only up to"
        " the oldest watermark; give each gatherer its own database (docs/dedup.md, one"
        " database per gatherer)"
    ]  # said once, not at every pass
    assert health["gatherer_ids"] == ["demo-1", "local-1"]
    # the trades and tickers are merged (read by commit); the order books wait for the mark
    assert (report.merged["trades"], report.merged["tickers"]) == (
        len(rec.trades),
        len(rec.tickers),
    )
    assert report.merged["orderbook_deltas"] == sum(
        1 for d in rec.orderbook_deltas if d.received_at < mark
    )
    assert sum(again.merged.values()) == 0


async def test_rows_written_before_migration_009_are_read_once_by_receipt(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # An upgraded gatherer database: its rows have no ingest_xid (NULL), and production's
    # cursor is a receipt (no `committed`). Those rows are read once by receipt from the
    # cursor on, then the cursor goes by commit; rows written after the upgrade follow.
    truth = make_truth(63, events=320)
    rec = record(truth, "g0")
    gatherer, production = make_db(), make_db()
    await write_recording(gatherer, _tables(rec, "trades"), tmp_path)
    received = sorted(t.received_at for t in rec.trades)
    cut = received[10]  # the old deduplicator had merged the first 11 trades
    with connect_db(gatherer) as db:
        db.execute("UPDATE trades SET ingest_xid = NULL")
    with connect_db(production) as db:
        db.execute(
            "INSERT INTO dedup_cursors (gatherer_id, table_name, position, horizon, updated_at)"
            " VALUES ('g0', 'trades', '[]', %s, 0)",
            (cut,),
        )
    await write_recording(gatherer, _tables(rec, "tickers"), tmp_path)  # after the upgrade
    dedup = Deduplicator(dedup_config(production, {"g0": gatherer}, batch_size=7))
    try:
        first = await dedup.run_pass(settle_us=0)
        again = await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    assert (first.merged["trades"], first.merged["tickers"]) == (29, 27)
    assert (len(rec.trades), len(rec.tickers)) == (40, 27)
    assert sum(again.merged.values()) == 0
    with connect_db(production) as db:
        assert db.query("SELECT count(*) FROM trades WHERE received_at <= %s", (cut,)) == [(0,)]
        assert db.query("SELECT committed > 0 FROM dedup_cursors WHERE table_name = 'trades'") == [
            (True,)
        ]


async def test_a_failure_between_the_transactions_of_a_read_step_repeats_no_row(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # Keyed rows are read in steps larger than sync.batch_size (KEYED_READ_ROWS) and written
    # in transactions of sync.batch_size; only the step's last transaction moves the cursor.
    # Production fails in the third transaction (a trigger refuses a 15th trade): the next
    # deduplicator reads the step again, production drops the 14 it has, none is repeated.
    truth = make_truth(64, events=320)
    rec = _tables(record(truth, "g0"), "trades")
    gatherer, production = make_db(), make_db()
    await write_recording(gatherer, rec, tmp_path)
    with connect_db(production) as db:
        db.execute(
            "CREATE FUNCTION refuse_15th() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF (SELECT count(*) FROM trades) > 14 THEN RAISE EXCEPTION 'refused'; END IF;"
            " RETURN NULL; END $$"
        )
        db.execute(
            "CREATE TRIGGER refuse_15th AFTER INSERT ON trades"
            " FOR EACH STATEMENT EXECUTE FUNCTION refuse_15th()"
        )
    cfg = dedup_config(production, {"g0": gatherer}, batch_size=7)
    dedup = Deduplicator(cfg)
    try:
        with pytest.raises(StoreError, match="refused"):
            await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    with connect_db(production) as db:
        assert db.query("SELECT count(*) FROM trades") == [(14,)]
        # where the cursor went before the step (the first pass's start, by commit)
        assert db.query("SELECT committed FROM dedup_cursors WHERE table_name = 'trades'") == [(0,)]
        db.execute("DROP TRIGGER refuse_15th ON trades")
    passes = []
    for _ in range(2):
        dedup = Deduplicator(cfg)
        try:
            report = await dedup.run_pass(settle_us=0)
        finally:
            dedup.close()
        passes.append((report.merged["trades"], report.duplicates["trades"]))
    assert len(rec.trades) == 51
    assert passes == [(51 - 14, 14), (0, 0)]
    with connect_db(production) as db:
        assert db.query("SELECT count(*), count(DISTINCT trade_id) FROM trades") == [(51, 51)]


async def test_a_switch_after_a_pass_that_ended_on_a_delta_stamped_backwards_leaves_no_hole(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # Outside tester, F1: a pass ended on gb's delta stamped 1 ms before the delta merged
    # just before it; gb went down, reconnected and snapshotted. The next pass looked for
    # that delta in ga's recording at the checkpoint's newest merged time, not at its own,
    # found nothing and resumed from gb's snapshot: a merge_hole over what ga had.
    start = OrderBook("KXTEST-00")
    start.yes = {30_000: 1_000}
    start.no = {20_000: 1_000}
    changes = [  # (ms after T0, yes side, price, size_delta)
        (1, True, 31_000, 100),
        (3, False, 21_000, 300),
        (2, True, 31_000, 400),  # stamped before the previous delta: gb's pass ends here
        (5, True, 32_000, 200),
        (6, False, 21_000, -100),
        (7, True, 30_000, -500),
        (8, False, 22_000, 700),
        (9, True, 31_000, -200),
        (10, False, 20_000, 100),
    ]
    events = [
        Event(i, T0 + ms * 1_000, "KXTEST-00", "delta", side, price, change)
        for i, (ms, side, price, change) in enumerate(changes)
    ]
    end = start.copy()
    for event in events:
        levels = end.yes if event.side else end.no
        levels[event.price] = levels.get(event.price, 0) + event.size
        if levels[event.price] == 0:
            del levels[event.price]
    truth = Truth(["KXTEST-00"], {"KXTEST-00": start}, events, {"KXTEST-00": end})
    misses = {"ga": [], "gb": [(3, 6, "reconnect")]}  # gb loses events 3..6, reconnects
    ga, gb = recordings(truth, misses)
    cut = next(r.received_at for r in gb.orderbook_deltas if r.exchange_ts == T0 + 2_000)
    gb_then, gb_later = split(gb, [cut])
    production, url_a, url_b = make_db(), make_db(), make_db()
    await write_recording(url_a, ga, tmp_path / "ga")
    await write_recording(url_b, gb_then, tmp_path / "gb")
    await merge_once(production, {"gb": url_b})  # ga not reachable yet
    with connect_db(production) as db:
        assert db.query("SELECT count(*) FROM orderbook_deltas") == [(3,)]
    await write_recording(url_b, gb_later, tmp_path / "gb")
    report = await merge_once(production, {"ga": url_a, "gb": url_b})
    assert (report.holes, report.switches) == (0, 1)
    assert_production_is_truth(production, truth, {"ga": []})
    with connect_db(production) as db:
        rows = db.query("SELECT seq, gatherer_id FROM orderbook_deltas ORDER BY seq")
    assert rows == [(2, "gb"), (3, "gb"), (4, "gb"), *((n, "ga") for n in range(5, 11))]


async def test_a_pass_logs_its_order_book_holes_in_one_line_each_hole_at_debug(
    make_db: Callable[..., str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside tester pbreak8 F2: a WARNING per hole was 250 000 lines per gatherer restart
    at 250 000 markets. Now one line per pass (count, markets, the first five tickers, where
    the list is); each hole at DEBUG; the gaps rows and the counter as before."""
    truth = make_truth(11, events=320)
    expected = holes(truth, list(MISSES.values()))
    urls = await write_all(make_db, recordings(truth, MISSES), tmp_path)
    production = make_db()
    dedup = Deduplicator(dedup_config(production, urls, batch_size=37))
    caplog.set_level("DEBUG", logger="kalshi.dedup")
    try:
        report = await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    tickers = sorted({ticker for ticker, _ in expected})
    assert len(expected) == 6 and len(tickers) == 3  # the scripted misses, exactly
    assert report.holes == len(expected)
    named = ", ".join(tickers)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "kalshi.dedup" and r.levelname == "WARNING" and "hole" in r.getMessage()
    ]
    assert warnings == [
        f"6 order-book hole(s) in 3 market(s) ({named}): no gatherer has these stretches, "
        "each resumed from a later snapshot; every one is a production gaps row (kind "
        "'merge_hole'), counted by kalshi_dedup_holes_total"
    ]
    debug = sorted(
        r.getMessage().split(":")[0]
        for r in caplog.records
        if r.levelname == "DEBUG" and r.getMessage().startswith("order-book hole in ")
    )
    assert debug == sorted(f"order-book hole in {ticker}" for ticker, _ in expected)
    with connect_db(production) as db:
        rows = db.query("SELECT ticker FROM gaps WHERE kind = 'merge_hole' ORDER BY ticker")
    assert [r[0] for r in rows] == sorted(ticker for ticker, _ in expected)


def test_the_hole_summary_names_five_markets_and_counts_the_rest() -> None:
    line = _holes_summary(["M7", "M1", "M1", "M2", "M3", "M4", "M5", "M6"])
    assert line.startswith("8 order-book hole(s) in 7 market(s) (M1, M2, M3, M4, M5 and 2 more):")


GOLD = Path(__file__).parent.parent / "data" / "kalshi-gold15m"


async def test_the_replayed_gold_capture_merges_with_no_hole(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    """Outside tester pbreak8 F10: the real capture (three markets, a filtered capture:
    skipped seq are no loss) replayed into a gatherer database merged into 3 merge_hole
    rows, one at each market's closing empty snapshot, an exchange restating the book on
    the same sid with nothing lost. Now no hole, every row once, the final books those of
    the capture's independent book builder (expected.json: empty)."""
    gatherer, production = make_db(), make_db()
    done = await trio.run_process(
        [sys.executable, "-m", "kalshi", "replay", str(GOLD / "events"), "--db", gatherer],
        cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = orjson.loads((GOLD / "expected.json").read_bytes())
    dedup = Deduplicator(dedup_config(production, {"gold": gatherer}))
    try:
        report = await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    assert (report.holes, report.switches) == (0, 0)
    assert {t: report.merged[t] for t in ("orderbook_deltas", "orderbook_snapshots", "gaps")} == {
        "orderbook_deltas": 100_838,
        "orderbook_snapshots": 6,
        "gaps": 0,
    }
    books = production_books(production)  # also checks each stream's seq is 1, 2, ...
    assert sorted(books) == sorted(expected)
    for ticker, book in books.items():
        assert (book.yes, book.no) == ({}, {}), ticker
        assert expected[ticker]["final_book"] == {"yes": [], "no": []}
    with connect_db(production) as db:
        assert db.query("SELECT count(*) FROM gaps") == [(0,)]
        assert db.query(
            "SELECT ticker, seq FROM orderbook_snapshots WHERE source = 'ws' ORDER BY 1, 2"
        ) == [
            ("KXGOLD15M-26AUG050000-00", 1),
            ("KXGOLD15M-26AUG050000-00", 37_094),
            ("KXGOLD15M-26AUG050800-00", 1),
            ("KXGOLD15M-26AUG050800-00", 28_616),
            ("KXGOLD15M-26AUG051300-00", 1),
            ("KXGOLD15M-26AUG051300-00", 35_134),  # 37 092 + 28 614 + 35 132 deltas
        ]
