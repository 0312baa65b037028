"""The per-market merge on scripted recordings, without a database."""

from __future__ import annotations

import attrs

from kalshi.dedup.merge import HOLE_KIND, merge_market
from kalshi.dedup.segments import apply_row, book_from_snapshot, build_segments
from kalshi.models.rows import DeltaRow, GapRow, SnapshotRow
from kalshi.testing.recording import Recording, covered, make_truth, record
from kalshi.testing.recording import holes as holes_of

MISSES = [
    [(40, 70, "seq_gap"), (200, 230, "reconnect")],
    [(60, 100, "reconnect"), (215, 240, "seq_gap")],
]


def _merge_all(recordings: list[Recording], ticker: str):  # type: ignore[no-untyped-def]
    segments = [
        segment
        for rec in recordings
        for segment in build_segments(
            rec.gatherer_id, ticker, rec.orderbook_snapshots, rec.orderbook_deltas, rec.gaps
        )
    ]
    return merge_market(ticker, None, None, segments, prefer=[r.gatherer_id for r in recordings])


def test_two_gatherers_merge_to_the_truth_with_one_hole_per_shared_miss() -> None:
    truth = make_truth(7, events=300)
    recordings = [record(truth, f"g{i}", m, conn_base=i + 1) for i, m in enumerate(MISSES)]
    expected = covered(truth, MISSES, "delta")
    merged_deltas = []
    holes = []
    for ticker in truth.markets:
        out = _merge_all(recordings, ticker)
        stream = sorted([*out.snapshots, *out.deltas], key=lambda r: r.seq)
        assert [r.seq for r in stream] == list(range(1, len(stream) + 1))
        book = None
        for row in stream:
            if hasattr(row, "yes_bids"):
                book = book_from_snapshot(row)  # type: ignore[arg-type]
            else:
                assert book is not None
                apply_row(book, row)  # type: ignore[arg-type]
        assert book == truth.books[ticker]
        merged_deltas += [
            (d.exchange_ts, d.ticker, d.side, d.price, d.size_delta) for d in out.deltas
        ]
        holes += out.holes
    assert sorted(merged_deltas) == sorted(
        (e.exchange_ts, e.ticker, e.side, e.price, e.size) for e in expected
    )
    # g0 and g1 both lost 60..70 and 215..230
    expected_holes = [(t, truth.events[i].exchange_ts) for t, i in holes_of(truth, MISSES)]
    assert len(expected_holes) == 6  # seed 7: every market lost deltas in both overlaps
    found = [(h.ticker, h.start_ts) for h in holes]
    assert len(found) == len(expected_holes)
    for (ticker, first_lost_ts), (hole_ticker, start) in zip(
        sorted(expected_holes), sorted(found), strict=True
    ):
        assert hole_ticker == ticker
        assert start - 4_000 <= first_lost_ts  # exchange times run up to 4 ms backwards
    assert {h.kind for h in holes} == {HOLE_KIND}


def test_a_pass_ending_anywhere_then_a_switch_leaves_no_hole() -> None:
    # Outside tester, F1: a pass ended on a delta stamped before the newest merged time
    # (exchange times are not monotonic on a connection), its gatherer then died; the next
    # pass looked for that delta at the newest time in the other gatherer's recording and
    # left a hole. Whatever delta a pass ends on, the next one continues on the other
    # gatherer with every delta of the truth, in order, once.
    truth = make_truth(9, events=300)
    full, source = record(truth, "ga", conn_base=1), record(truth, "gb", conn_base=2)
    backwards = 0
    for ticker in truth.markets:
        expected = [(e.exchange_ts, e.side, e.price, e.size) for e in truth.deltas()
                    if e.ticker == ticker]  # fmt: skip
        (first,) = build_segments("gb", ticker, source.orderbook_snapshots,
                                  source.orderbook_deltas, [])  # fmt: skip
        others = build_segments("ga", ticker, full.orderbook_snapshots, full.orderbook_deltas, [])
        for end in range(1, len(first.deltas)):
            newest = max(d.exchange_ts for d in first.deltas[:end])
            backwards += first.deltas[end - 1].exchange_ts < newest
            part = attrs.evolve(first, book=first.book.copy(), deltas=first.deltas[:end])
            before = merge_market(ticker, None, None, [part], prefer=["gb", "ga"])
            assert before.checkpoint is not None
            after = merge_market(ticker, before.checkpoint, None, others,
                                 prefer=["gb", "ga"], source_alive=False)  # fmt: skip
            assert (after.holes, after.snapshots, after.switches) == ([], [], 1), end
            merged = [*before.deltas, *after.deltas]
            assert [d.seq for d in merged] == list(range(2, len(expected) + 2))
            assert [(d.exchange_ts, d.side, d.price, d.size_delta) for d in merged] == expected
            assert after.checkpoint is not None and after.checkpoint.book == truth.books[ticker]
    assert backwards == 3  # passes that ended on a delta stamped before the newest time


# A closing market as the real exchange sends it (gold capture, kalshi-api.md §3.1): a
# snapshot, deltas, then an empty snapshot on the same sid, its seq going on.
_T = 1_785_902_000_000_000
_M = "KXGOLD15M-26AUG050000-00"


def _snap(frame_no: int, seq: int, yes: str, no: str, gatherer: str = "g") -> SnapshotRow:
    at = _T + frame_no * 1_000
    return SnapshotRow(
        snapshot_ts=at,
        exchange_ts=None,
        received_at=at,
        gatherer_id=gatherer,
        ticker=_M,
        source="ws",
        yes_bids=yes,
        no_bids=no,
        conn_id=7,
        frame_no=frame_no,
        sid=1,
        seq=seq,
    )


def _delta(frame_no: int, seq: int, price: int, change: int) -> DeltaRow:
    at = _T + frame_no * 1_000
    return DeltaRow(
        exchange_ts=at - 500,
        received_at=at,
        gatherer_id="capture",
        ticker=_M,
        side=True,
        price=price,
        size_delta=change,
        conn_id=7,
        frame_no=frame_no,
        sid=1,
        seq=seq,
    )


_CLOSING = (
    [_snap(1, 10, "[[1000, 500], [2000, 300]]", "[[3000, 100]]"), _snap(4, 90, "[]", "[]")],
    [_delta(2, 25, 1000, -200), _delta(3, 61, 2000, 100)],  # seq skips: a filtered capture
)


def test_a_resnapshot_on_the_same_connection_with_no_gap_between_is_no_hole() -> None:
    # Outside tester pbreak8 F10: the gold capture's closing empty snapshots were 3
    # merge_hole rows. Nothing was lost: the exchange restated the book on the same sid.
    # (The deltas carry the capture's gatherer_id, not the configured one, as there.)
    snapshots, deltas = _CLOSING
    segments = build_segments("g", _M, snapshots, deltas, [])
    assert [(s.cut, s.follows) for s in segments] == [(True, False), (False, True)]
    out = merge_market(_M, None, None, segments, prefer=["g"])
    assert out.holes == []
    assert [(r.frame_no, r.seq) for r in out.snapshots] == [(1, 1), (4, 4)]
    assert [(r.frame_no, r.seq) for r in out.deltas] == [(2, 2), (3, 3)]
    assert out.checkpoint is not None
    assert (out.checkpoint.frame_no, out.checkpoint.seq, out.checkpoint.waiting) == (4, 4, False)
    assert out.checkpoint.book.yes == {} and out.checkpoint.book.no == {}


def test_a_resnapshot_after_a_gap_of_its_connection_is_still_a_hole() -> None:
    snapshots, deltas = _CLOSING
    gap = _gap(_T + 3_500, _T + 4_000, None, "seq_gap")
    segments = build_segments("g", _M, snapshots, deltas, [gap])
    assert [(s.cut, s.follows) for s in segments] == [(True, False), (False, False)]
    out = merge_market(_M, None, None, segments, prefer=["g"])
    assert [(h.ticker, h.start_ts, h.end_ts, h.kind) for h in out.holes] == [
        (_M, _T + 3_000 - 500, _T + 4_000, HOLE_KIND)
    ]
    assert [(r.frame_no, r.seq) for r in out.snapshots] == [(1, 1), (4, 4)]


def _gap(start_ts: int, end_ts: int, ticker: str | None, kind: str) -> GapRow:
    return GapRow(
        start_ts=start_ts,
        end_ts=end_ts,
        gatherer_id="g",
        conn_id=7,
        sid=1,
        ticker=ticker,
        kind=kind,
        expected_seq=62 if kind == "seq_gap" else None,
        got_seq=90 if kind == "seq_gap" else None,
        detail="lost",
    )


def test_a_resnapshot_after_the_gatherer_found_its_book_wrong_is_a_hole() -> None:
    """A live book that never matched its REST answer: the gatherer's open
    ``book_invalid`` of the market from the REST request's send (here between the two
    deltas) to the resnapshot cuts the segment there, and the resnapshot does not follow
    it: alone, the stretch is a hole from the last delta before the send."""
    snapshots, deltas = _CLOSING
    gap = _gap(_T + 2_500, _T + 4_000, _M, "book_invalid")
    segments = build_segments("g", _M, snapshots, deltas, [gap])
    assert [(s.cut, s.follows) for s in segments] == [(True, False), (False, False)]
    assert [d.frame_no for d in segments[0].deltas] == [2]  # frame 3 came after the send
    out = merge_market(_M, None, None, segments, prefer=["g"])
    assert [(r.frame_no, r.seq) for r in out.deltas] == [(2, 2)]
    assert [(h.ticker, h.start_ts, h.end_ts, h.kind) for h in out.holes] == [
        (_M, _T + 2_000 - 500, _T + 4_000, HOLE_KIND)
    ]
