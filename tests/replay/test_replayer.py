"""The Replayer on literal frames: same rows as the live pipeline, the state the gatherer
keeps outside the pipeline, filters, JSON lines and CSV, and pacing on Trio's clock."""

from __future__ import annotations

import io

import orjson
import trio
from replay_support import (
    BASE_US,
    GATHERER,
    OB_CONN,
    T1,
    T2,
    TRADE_CONN,
    ListSink,
    delta,
    literal,
    records,
    scripted_session,
    snapshot,
    subscribed,
)

from kalshi.journal import JournalProblem, JournalRecord
from kalshi.models.rows import GapRow, Row
from kalshi.pipeline import FrameProcessor
from kalshi.replay import CsvSink, JsonlSink, Replayer, ReplayFilter, replay


def feed_all(replayer: Replayer, items: list[JournalRecord]) -> list[tuple[str, Row]]:
    return [row for item in items for row in replayer.feed(item)]


LITERALS = [
    "subscribed",
    "orderbook_snapshot",
    "orderbook_delta",
    "trade",
    "ticker",
    "market_lifecycle_created",
    "event_lifecycle",
    "event_fee_update",
    "error",
    "ok_list",
    "unsubscribed",
]


def test_literal_frames_give_the_live_pipelines_rows() -> None:
    live = FrameProcessor(GATHERER)
    expected: list[tuple[str, Row]] = []
    items = []
    for n, name in enumerate(LITERALS, 1):
        raw = literal(name)
        expected.extend(live.process(9, n, 1000 + n, raw).rows)
        items.append(JournalRecord(GATHERER, 9, n, "in", 1000 + n, n, "frame", raw))
    rep = Replayer()
    assert feed_all(rep, items) == expected
    assert {t for t, _ in expected} == {
        "orderbook_snapshots",
        "orderbook_deltas",
        "gaps",
        "trades",
        "tickers",
        "market_lifecycle",
    }
    assert rep.stats.frames == len(LITERALS)


def test_feed_all_is_feed_of_each_item() -> None:
    """feed_all's unfiltered fast path gives what feed gives item by item: the rows in
    order, every stat, the continuity of every session and market."""
    literals = [
        JournalRecord(GATHERER, 9, n, "in", BASE_US + 9000 + n, n, "frame", literal(name))
        for n, name in enumerate(LITERALS, 1)
    ]
    items: list[JournalRecord | JournalProblem] = [
        *records(scripted_session()),
        JournalProblem("a.jsonl", 3, "invalid JSON"),
        *literals,
    ]
    for flt in (None, ReplayFilter(tickers=frozenset({T2})), ReplayFilter(end_us=BASE_US + 600)):
        each, batched = Replayer(flt), Replayer(flt)
        expected = [row for item in items for row in each.feed(item)]
        got = batched.feed_all(items[:7]) + batched.feed_all(items[7:])
        assert got == expected
        assert batched.stats == each.stats
        assert batched.continuity.sessions == each.continuity.sessions
        assert batched.continuity.markets == each.continuity.markets
        assert batched.processor(GATHERER).counts == each.processor(GATHERER).counts
        if flt is None:
            assert (each.stats.records, each.stats.frames) == (len(items) - 1, 12 + len(LITERALS))


def test_out_frames_and_markers_are_not_rows_but_problems_are_kept() -> None:
    rep = Replayer()
    problem = JournalProblem("a.jsonl", 3, "invalid JSON")
    rows = feed_all(rep, records(scripted_session()))
    assert rep.feed(problem) == []
    assert (rep.stats.frames, rep.stats.markers, rep.stats.records) == (12, 3, 16)
    assert rep.stats.problems == [problem]
    assert len(rows) == 10


def test_a_disconnect_marks_the_connections_books_stale() -> None:
    rep = Replayer()
    feed_all(rep, records(scripted_session()[:-1]))
    proc = rep.processor(GATHERER)
    assert proc.stale == {T2}  # since the seq gap; T1 was snapshotted again
    feed_all(rep, records(scripted_session()[-1:]))
    assert proc.stale == {T1, T2}


def test_delete_markets_sent_drops_the_book_as_live() -> None:
    entries: list[tuple[object, ...]] = [
        ("in", OB_CONN, 1, 1, subscribed(1, "orderbook_delta")),
        ("in", OB_CONN, 2, 2, snapshot(1, 1, T1, yes=[("0.4000", "1.00")])),
        (
            "out",
            OB_CONN,
            2,
            3,
            b'{"id":2,"cmd":"update_subscription","params":{"sids":[1],'
            b'"market_tickers":["' + T1.encode() + b'"],"action":"delete_markets"}}',
        ),
        # In flight before the delete took effect: would make the level negative.
        ("in", OB_CONN, 3, 4, delta(1, 2, T1, "0.4000", "-5.00")),
    ]
    rep = Replayer()
    rows = feed_all(rep, records(entries))
    assert T1 not in rep.processor(GATHERER).books
    # Stored, not applied: no book_invalid gap, no resnapshot, as in the live gatherer.
    assert [t for t, _ in rows] == ["orderbook_snapshots", "orderbook_deltas"]
    assert dict(rep.stats.frame_problems) == {}
    without = Replayer()
    late = feed_all(without, [r for r in records(entries) if r.direction == "in"])
    assert [t for t, _ in late] == ["orderbook_snapshots", "orderbook_deltas", "gaps"]


def test_filters_select_output_but_process_everything() -> None:
    items = records(scripted_session())
    everything = feed_all(Replayer(), items)
    only_t2 = feed_all(Replayer(ReplayFilter(tickers=frozenset({T2}))), items)
    # The seq gap concerns the subscription (no ticker): kept with T2's rows.
    assert only_t2 == [(t, r) for t, r in everything if getattr(r, "ticker", None) in (T2, None)]
    assert [t for t, _ in only_t2] == ["orderbook_snapshots", "trades", "orderbook_deltas", "gaps"]
    trades = feed_all(Replayer(ReplayFilter(channels=frozenset({"trade"}))), items)
    assert [(t, r.conn_id) for t, r in trades] == [("trades", TRADE_CONN)] * 2  # type: ignore[union-attr]
    gaps = feed_all(Replayer(ReplayFilter(tables=frozenset({"gaps"}))), items)
    assert [type(r) for _, r in gaps] == [GapRow]
    window = feed_all(Replayer(ReplayFilter(start_us=BASE_US + 400, end_us=BASE_US + 700)), items)
    assert [(t, getattr(r, "received_at", None)) for t, r in window] == [
        ("orderbook_deltas", BASE_US + 400),
        ("orderbook_deltas", BASE_US + 500),
        ("gaps", None),
        ("orderbook_deltas", BASE_US + 700),
    ]


async def test_jsonl_and_csv_are_the_columns_exactly() -> None:
    items = records(scripted_session())
    out = io.BytesIO()
    sink = JsonlSink(out)
    await replay(items, sink, replayer=Replayer(ReplayFilter(tickers=frozenset({T2}))))
    sink.flush()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {
        "table": "orderbook_snapshots",
        "snapshot_ts": BASE_US + 300,
        "exchange_ts": None,
        "received_at": BASE_US + 300,
        "gatherer_id": GATHERER,
        "ticker": T2,
        "source": "ws",
        "yes_bids": [[10000, 100]],
        "no_bids": [],
        "conn_id": OB_CONN,
        "frame_no": 3,
        "sid": 1,
        "seq": 2,
    }
    assert [line["table"] for line in lines] == [
        "orderbook_snapshots",
        "trades",
        "orderbook_deltas",
        "gaps",
    ]
    out = io.BytesIO()
    csv_sink = CsvSink(out, "trades")
    await replay(items, csv_sink)
    csv_sink.flush()
    assert out.getvalue().decode().splitlines() == [
        "exchange_ts,received_at,gatherer_id,ticker,trade_id,price,size,taker_side,"
        "is_block_trade,source,conn_id,frame_no,seq",
        f"1795561141250000,{BASE_US + 250},g-1,{T1},tr-1,42000,300,true,false,ws,{TRADE_CONN},2,1",
        f"1795561141250000,{BASE_US + 350},g-1,{T2},tr-2,11000,100,true,false,ws,{TRADE_CONN},3,2",
    ]


async def test_speed_paces_by_recorded_time(autojump_clock: trio.abc.Clock) -> None:
    items = records(scripted_session())
    first, last = BASE_US + 100, BASE_US + 900  # the first and last frame
    for speed in (1.0, 10.0):
        sink = ListSink()
        start = trio.current_time()
        stats = await replay(items, sink, speed=speed)
        assert trio.current_time() == start + (last - first) / 1e6 / speed
        assert len(sink.rows) == 10 and stats.frames == 12
    start = trio.current_time()
    await replay(items, ListSink())
    assert trio.current_time() == start  # flat out takes no virtual time


async def test_speed_starts_the_clock_at_the_window(autojump_clock: trio.abc.Clock) -> None:
    items = records(scripted_session())
    flt = ReplayFilter(start_us=BASE_US + 500)
    start = trio.current_time()
    await replay(items, ListSink(), replayer=Replayer(flt), speed=2.0)
    assert trio.current_time() == start + (900 - 500) / 1e6 / 2.0


def test_json_lines_are_each_rows_columns_by_name() -> None:
    """Every table's row (JSON columns, NULLs, booleans, non-ASCII text) as one JSON object:
    the table, then each column by name in column order; JSON columns embedded as JSON."""
    from kalshi.models.rows import TABLE_COLUMNS
    from kalshi.store.schema import TABLES
    from tests.db.test_store_writer import every_table_rows

    rows = [(table, row) for table, table_rows in every_table_rows().items() for row in table_rows]
    rows.append(
        (
            "gaps",
            GapRow(
                start_ts=1,
                end_ts=None,
                gatherer_id="g-é",
                conn_id=2,
                sid=None,
                ticker=None,
                kind="seq_gap",
                expected_seq=None,
                got_seq=3,
                detail='a"b\n\u0001',
            ),
        )
    )
    out = io.BytesIO()
    sink = JsonlSink(out)
    trio.run(sink.put_all, rows)
    sink.flush()
    expected = []
    for table, row in rows:
        obj: dict[str, object] = {"table": table}
        for column, value in zip(TABLE_COLUMNS[table], row, strict=True):
            json_column = column in TABLES[table].json_columns
            obj[column] = orjson.Fragment(value) if json_column else value
        expected.append(orjson.dumps(obj) + b"\n")
    assert out.getvalue() == b"".join(expected)
    assert [orjson.loads(line)["table"] for line in out.getvalue().splitlines()] == [
        table for table, _ in rows
    ]
