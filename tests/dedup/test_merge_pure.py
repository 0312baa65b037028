"""The per-market merge on scripted recordings, without a database."""

from __future__ import annotations

from kalshi.dedup.merge import HOLE_KIND, merge_market
from kalshi.dedup.segments import apply_row, book_from_snapshot, build_segments
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
