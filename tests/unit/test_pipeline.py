"""The frame pipeline on literal frames: rows, sequence checks, stale books, problems."""

from __future__ import annotations

import orjson

from kalshi.models.rows import DeltaRow, GapRow, SnapshotRow, TradeRow
from kalshi.pipeline import FrameProcessor

T = "FED-23DEC-T3.00"
MID = "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1"


def frame(kind: str, sid: int, seq: int | None, **msg: object) -> bytes:
    envelope: dict[str, object] = {"type": kind, "sid": sid, "msg": msg}
    if seq is not None:
        envelope["seq"] = seq
    return orjson.dumps(envelope)


def subscribed(sid: int, channel: str) -> bytes:
    return orjson.dumps({"id": 1, "type": "subscribed", "msg": {"channel": channel, "sid": sid}})


def snapshot(seq: int) -> bytes:
    return frame(
        "orderbook_snapshot",
        1,
        seq,
        market_ticker=T,
        market_id=MID,
        yes_dollars_fp=[["0.0800", "300.00"], ["0.2200", "333.00"]],
        no_dollars_fp=[["0.5400", "20.00"]],
    )


def delta(
    seq: int, price: str, size: str, side: str = "yes", ts_ms: int = 1_700_000_000_123
) -> bytes:
    return frame(
        "orderbook_delta",
        1,
        seq,
        market_ticker=T,
        market_id=MID,
        price_dollars=price,
        delta_fp=size,
        side=side,
        ts_ms=ts_ms,
    )


def started() -> FrameProcessor:
    p = FrameProcessor("g1")
    assert p.process(7, 1, 100, subscribed(1, "orderbook_delta")).rows == []
    out = p.process(7, 2, 200, snapshot(1))
    assert out.rows == [
        (
            "orderbook_snapshots",
            SnapshotRow(
                snapshot_ts=200,
                exchange_ts=None,
                received_at=200,
                gatherer_id="g1",
                ticker=T,
                source="ws",
                yes_bids="[[8000,30000],[22000,33300]]",
                no_bids="[[54000,2000]]",
                conn_id=7,
                frame_no=2,
                sid=1,
                seq=1,
            ),
        )
    ]
    return p


def test_snapshot_then_deltas_give_exact_rows_and_book() -> None:
    p = started()
    out = p.process(7, 3, 300, delta(2, "0.2200", "-33.50"))
    assert out.rows == [
        (
            "orderbook_deltas",
            DeltaRow(
                exchange_ts=1_700_000_000_123_000,
                received_at=300,
                gatherer_id="g1",
                ticker=T,
                side=True,
                price=22000,
                size_delta=-3350,
                conn_id=7,
                frame_no=3,
                sid=1,
                seq=2,
            ),
        )
    ]
    assert out.problem is None and out.resnapshot == []
    assert p.books[T].yes == {8000: 30000, 22000: 29950}
    assert p.books[T].no == {54000: 2000}


def test_repeated_seq_is_counted_and_not_stored() -> None:
    p = started()
    p.process(7, 3, 300, delta(2, "0.2200", "1.00"))
    out = p.process(7, 4, 301, delta(2, "0.2200", "1.00"))
    assert out.rows == [] and out.problem == "duplicate"
    assert p.counts["duplicate"] == 1
    assert p.books[T].yes[22000] == 33400


def test_seq_gap_writes_a_gap_row_and_asks_for_a_snapshot() -> None:
    p = started()
    out = p.process(7, 3, 300, delta(5, "0.0800", "-1.00"))
    assert out.gap and out.resnapshot == [T]
    assert out.rows[0] == (
        "gaps",
        GapRow(
            start_ts=200,
            end_ts=300,
            gatherer_id="g1",
            conn_id=7,
            sid=1,
            ticker=None,
            kind="seq_gap",
            expected_seq=2,
            got_seq=5,
            detail="orderbook_delta: 3 frame(s) missing; resnapshot 1 market(s)",
        ),
    )
    assert out.rows[1][0] == "orderbook_deltas"  # the delta itself is real: stored
    assert T in p.stale
    assert p.books[T].yes[8000] == 30000  # not applied to a stale book
    # the fresh snapshot (get_snapshot continues the same seq stream) makes it trusted again
    p.process(7, 4, 400, snapshot(6))
    assert T not in p.stale


def test_negative_level_marks_the_book_invalid() -> None:
    p = started()
    out = p.process(7, 3, 300, delta(2, "0.5400", "-20.01", side="no"))
    assert out.problem == "book_invalid" and out.resnapshot == [T]
    assert out.rows[1] == (
        "gaps",
        GapRow(
            start_ts=300,
            end_ts=None,
            gatherer_id="g1",
            conn_id=7,
            sid=1,
            ticker=T,
            kind="book_invalid",
            expected_seq=None,
            got_seq=2,
            detail=f"{T}: no level 54000 would have size -1",
        ),
    )


def test_bad_frames_are_counted_not_raised() -> None:
    p = started()
    assert p.process(7, 3, 300, b'{"type":"orderbook_delta",').problem == "invalid"
    assert p.process(7, 4, 300, b'{"type":"mystery","msg":{}}').problem == "unknown_type"
    wrong = frame(
        "orderbook_delta", 1, 2, market_ticker=T, price_dollars=5, delta_fp="1", side="yes"
    )
    assert p.process(7, 5, 300, wrong).problem == "invalid"
    assert (p.counts["invalid"], p.counts["unknown_type"]) == (2, 1)


def test_trade_rows_and_trade_gap_requests_backfill() -> None:
    p = FrameProcessor("g1")
    p.process(9, 1, 100, subscribed(3, "trade"))

    def trade(seq: int, ident: str) -> bytes:
        return frame(
            "trade",
            3,
            seq,
            trade_id=ident,
            market_ticker=T,
            yes_price_dollars="0.3600",
            no_price_dollars="0.6400",
            count_fp="1.50",
            taker_side="no",
            taker_outcome_side="no",
            taker_book_side="ask",
            ts=1669149841,
            ts_ms=1669149841001,
        )

    out = p.process(9, 2, 150, trade(1, "a"))
    assert out.rows == [
        (
            "trades",
            TradeRow(
                exchange_ts=1669149841001000,
                received_at=150,
                gatherer_id="g1",
                ticker=T,
                trade_id="a",
                price=36000,
                size=150,
                taker_side=False,
                is_block_trade=False,
                source="ws",
                conn_id=9,
                frame_no=2,
                seq=1,
            ),
        )
    ]
    out = p.process(9, 3, 170, trade(3, "c"))
    assert out.backfill_from == 150 and out.gap


def test_late_deltas_of_a_dropped_market_are_stored_but_ask_for_nothing() -> None:
    p = started()
    p.drop_market(T)
    out = p.process(7, 3, 300, delta(2, "0.2200", "-1.00"))
    assert [table for table, _ in out.rows] == ["orderbook_deltas"]
    assert (out.problem, out.resnapshot, p.stale) == (None, [], set())
    p.process(7, 4, 400, snapshot(3))  # listed again: recorded again
    assert T in p.books and T not in p.retired


def test_a_gap_on_the_first_frame_of_a_subscription_is_a_gap() -> None:
    # kalshi-api.md §2.4: a fresh sid starts at seq 1; `subscribed` consumes none. A first
    # trade at seq 2 means seq 1 was lost: a gap row and a backfill from the reply's time.
    p = FrameProcessor("g1")
    p.process(9, 1, 100, subscribed(3, "trade"))
    first = frame(
        "trade",
        3,
        2,
        trade_id="b",
        market_ticker=T,
        yes_price_dollars="0.3600",
        count_fp="1.00",
        taker_side="yes",
        ts_ms=1669149841001,
    )
    out = p.process(9, 2, 150, first)
    assert out.gap and out.backfill_from == 100
    assert out.rows[0] == (
        "gaps",
        GapRow(
            start_ts=100,
            end_ts=150,
            gatherer_id="g1",
            conn_id=9,
            sid=3,
            ticker=None,
            kind="seq_gap",
            expected_seq=1,
            got_seq=2,
            detail="trade: 1 frame(s) missing",
        ),
    )
    assert [table for table, _ in out.rows] == ["gaps", "trades"]
    # a lifecycle subscription is checked the same way
    p.process(9, 3, 160, subscribed(4, "market_lifecycle_v2"))
    created = frame("market_lifecycle_v2", 4, 3, market_ticker=T, event_type="activated")
    out = p.process(9, 4, 170, created)
    assert out.gap and out.rows[0][1] == GapRow(
        start_ts=160,
        end_ts=170,
        gatherer_id="g1",
        conn_id=9,
        sid=4,
        ticker=None,
        kind="seq_gap",
        expected_seq=1,
        got_seq=3,
        detail="market_lifecycle_v2: 2 frame(s) missing",
    )


def test_a_repeated_subscribed_keeps_the_counter() -> None:
    p = started()
    p.process(7, 3, 300, delta(2, "0.2200", "1.00"))
    p.process(7, 4, 310, subscribed(1, "orderbook_delta"))  # re-subscribe: same sid
    out = p.process(7, 5, 320, delta(3, "0.2200", "1.00"))
    assert not out.gap and out.problem is None


def crossed_start() -> FrameProcessor:
    """The reported case: YES 0.4000x10, NO 0.5500x10 (YES ask 0.4500)."""
    p = FrameProcessor("g1", crossed_book_frames=2)
    p.process(7, 1, 100, subscribed(1, "orderbook_delta"))
    book = frame(
        "orderbook_snapshot",
        1,
        1,
        market_ticker=T,
        market_id=MID,
        yes_dollars_fp=[["0.4000", "10.00"]],
        no_dollars_fp=[["0.5500", "10.00"]],
    )
    assert p.process(7, 2, 200, book).problem is None
    return p


def test_a_crossing_delta_is_counted_recorded_and_resnapshotted_if_it_lasts() -> None:
    p = crossed_start()
    out = p.process(7, 3, 300, delta(2, "0.5000", "5.00"))  # YES bid 0.50 >= YES ask 0.45
    detail = f"{T}: crossed book: yes bid 50000 >= yes ask 45000"
    assert (out.problem, out.detail, out.resnapshot) == ("crossed", detail, [])
    assert out.rows[-1] == (
        "gaps",
        GapRow(
            start_ts=300,
            end_ts=None,
            gatherer_id="g1",
            conn_id=7,
            sid=1,
            ticker=T,
            kind="book_invalid",
            expected_seq=None,
            got_seq=2,
            detail=detail,
        ),
    )
    out = p.process(7, 4, 400, delta(3, "0.0100", "1.00"))  # still crossed: no new gap row
    assert (out.problem, [t for t, _ in out.rows], out.resnapshot) == (
        "crossed",
        ["orderbook_deltas"],
        [],
    )
    out = p.process(7, 5, 500, delta(4, "0.0200", "1.00"))  # the third frame: past 2
    assert (out.problem, out.resnapshot, T in p.stale) == ("crossed", [T], True)
    assert p.stale_cause[T] == "crossed for 3 frames"
    assert p.counts["crossed_book_frames"] == 3


def test_a_brief_cross_clears_without_a_resnapshot() -> None:
    p = crossed_start()
    assert p.process(7, 3, 300, delta(2, "0.5000", "5.00")).problem == "crossed"
    out = p.process(7, 4, 400, delta(3, "0.5000", "-5.00"))  # the match took it back
    assert (out.problem, out.resnapshot, p.crossed, T in p.stale) == (None, [], {}, False)
    assert p.counts["crossed_book_frames"] == 1
    # removing size never crosses; adding below the ask does not either
    assert p.process(7, 5, 500, delta(4, "0.4400", "1.00")).problem is None


def test_a_crossed_snapshot_is_counted_and_recorded_once() -> None:
    p = FrameProcessor("g1")
    p.process(7, 1, 100, subscribed(1, "orderbook_delta"))
    book = frame(
        "orderbook_snapshot",
        1,
        1,
        market_ticker=T,
        market_id=MID,
        yes_dollars_fp=[["0.6000", "10.00"]],
        no_dollars_fp=[["0.5500", "10.00"]],
    )
    out = p.process(7, 2, 200, book)
    detail = f"{T}: crossed snapshot: yes bid 60000 >= yes ask 45000"
    assert (out.problem, out.resnapshot) == ("crossed", [])
    assert out.rows[-1] == (
        "gaps",
        GapRow(
            start_ts=200,
            end_ts=None,
            gatherer_id="g1",
            conn_id=7,
            sid=1,
            ticker=T,
            kind="book_invalid",
            expected_seq=None,
            got_seq=1,
            detail=detail,
        ),
    )
    assert p.counts["crossed_book_frames"] == 1


def test_a_subscribed_without_sid_is_named_by_the_first_frame_of_its_channel() -> None:
    p = FrameProcessor("g1")
    p.sent(b'{"id":1,"cmd":"subscribe","params":{"channels":["orderbook_delta"]}}', 7)
    assert p.process(7, 1, 100, b'{"type":"subscribed","id":1}').problem is None
    assert p.subscription(7, 1) is None
    p.process(7, 2, 200, snapshot(1))  # seq 1 on sid 1: the subscription, checked from here
    assert p.subscription(7, 1) == "orderbook_delta"
    out = p.process(7, 3, 300, delta(3, "0.0800", "1.00"))  # seq 2 is missing
    assert [r.kind for t, r in out.rows if t == "gaps"] == ["seq_gap"]  # type: ignore[union-attr]
    assert out.resnapshot == [T]


def test_the_gatherer_summary_counts_each_frame_once() -> None:
    from collections import Counter

    from kalshi.cli.gather import summary_line

    counts = Counter(
        {"error": 226, "error_reply": 226, "ok": 2, "orderbook_delta": 40, "seq_gap": 1}
    )
    assert summary_line(268, counts) == (
        "stopped; 268 frames received (error 226, ok 2, orderbook_delta 40); flagged: seq_gap 1"
    )
    assert summary_line(2, Counter({"ok": 2, "duplicate": 0})) == (
        "stopped; 2 frames received (ok 2)"
    )


def test_a_rest_book_in_flight_is_matched_against_every_live_state_it_could_be() -> None:
    """Outside tester F3: a REST book carries no seq (kalshi-api.md §4.5), so deltas that
    arrive between the request and its reply, or just after it, are no difference; a state
    the live book never passed through is."""
    p = started()  # yes 0.08 x 300, 0.22 x 333; no 0.54 x 20
    at_send = p.books[T].copy()
    # 1. The exchange answered with the book at the send; a delta arrived before the reply.
    watch = p.watch(T)
    p.process(7, 3, 300, delta(2, "0.2200", "-33.00"))
    assert watch.answered(at_send, p.books[T]) is True
    del p.watches[T]
    # 2. The answer holds a delta still on its way at the reply: matched when it arrives.
    after = p.books[T].copy()
    after.yes[10_000] = 500
    watch = p.watch(T)
    assert watch.answered(after, p.books[T]) is False
    p.process(7, 4, 400, delta(3, "0.1000", "5.00"))
    assert watch.matched is True
    assert p.unwatch() == ([], 1)
    # 3. A real difference: the live book never is in the answer's state.
    wrong = p.books[T].copy()
    wrong.no[54_000] = 2100  # the exchange has 21.00 at 0.54; the live book 20.00
    watch = p.watch(T)
    p.process(7, 5, 500, delta(4, "0.0800", "-1.00"))
    assert watch.answered(wrong, p.books[T]) is False
    p.process(7, 6, 600, delta(5, "0.0800", "1.00"))
    assert p.unwatch() == ([T], 0)
    assert p.watches == {}
    # 4. A book the live pipeline does not trust (stale) is never counted.
    watch = p.watch(T)
    assert watch.answered(wrong, p.books[T]) is False
    p.process(7, 7, 700, delta(7, "0.0800", "1.00"))  # seq 6 skipped: stale
    assert T in p.stale
    assert p.unwatch() == ([], 0)


def test_a_rest_mismatch_is_a_book_invalid_gap_from_the_send_to_the_resnapshot() -> None:
    """A live book that never passed through its REST answer is known wrong from the
    request's send: an open ``book_invalid`` on the market's connection and sid, the book
    stale (deltas stored, not applied, and none ends the gap), closed by the next snapshot
    at its receipt, exactly like a crossed book's gap."""
    p = started()
    detail = f"{T}: live book never matched its REST order book; resnapshot"
    assert p.mismatch("OTHER-MARKET", 250, detail) is None  # on no subscription here
    row = p.mismatch(T, 250, detail)
    assert row == _invalid(250, conn_id=7, sid=1, detail=detail)
    assert T not in p.stale and p.invalid == {}  # made, not applied yet
    p.outside_gap(row)
    assert p.stale_cause[T] == detail and p.invalid == {T: [row]}
    book = p.books[T].copy()
    out = p.process(7, 3, 300, delta(2, "0.2200", "-33.00"))
    assert [table for table, _ in out.rows] == ["orderbook_deltas"]  # stored, no end
    assert p.books[T] == book  # not applied: the book is not trusted
    out = p.process(7, 4, 400, snapshot(3))
    assert out.rows[1:] == [("gaps", row._replace(end_ts=400))]
    assert T not in p.stale and p.invalid == {}


def test_gap_rows_made_outside_the_pipeline_open_and_end_only_a_live_books_gap() -> None:
    """What a replay does with each ``gap`` marker, as live: a crossed REST book's gap
    (conn 0) leaves the book trusted; a gap ended outside the pipeline (a clean stop)
    leaves :attr:`invalid`, so no later snapshot ends it a second time."""
    p = started()
    rest = _invalid(300, conn_id=0, sid=None, detail="crossed REST")
    p.outside_gap(rest)
    assert T not in p.stale and p.invalid == {}
    row = _invalid(310, conn_id=7, sid=1, detail="mismatch")
    p.outside_gap(row)
    assert p.invalid == {T: [row]}
    p.outside_gap(row._replace(end_ts=320))  # a clean stop ended it
    assert p.invalid == {}
    out = p.process(7, 3, 400, snapshot(2))
    assert [table for table, _ in out.rows] == ["orderbook_snapshots"]


def _invalid(start_ts: int, *, conn_id: int, sid: int | None, detail: str) -> GapRow:
    return GapRow(
        start_ts=start_ts,
        end_ts=None,
        gatherer_id="g1",
        conn_id=conn_id,
        sid=sid,
        ticker=T,
        kind="book_invalid",
        expected_seq=None,
        got_seq=None,
        detail=detail,
    )
