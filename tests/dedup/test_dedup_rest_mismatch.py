"""A gatherer whose live book went wrong with nothing on its socket saying so (deltas lost
without a ``seq`` gap), until its snapshot poller's REST answer showed it: the open
``book_invalid`` gap it journals (from the REST request's send, on the market's order-book
connection, ended by the resnapshot) cuts its stream there, so the merge takes another
gatherer's rows for that stretch, or records a ``merge_hole`` when no gatherer has them.
Gatherer databases written by the real store with the rows the real pipeline made of a
scripted journal (``kalshi.testing.recording``, miss kind ``rest_mismatch``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dedup_support import assert_production_is_truth, merge_once, recordings, write_all

from kalshi.models.rows import GapRow
from kalshi.store import connect_db
from kalshi.testing.recording import Recording, holes, make_truth

MISMATCH = (100, 160, "rest_mismatch")
DETAIL = "{}: live book never matched its REST order book; resnapshot"


def _journaled(rec: Recording) -> list[GapRow]:
    """The open ``book_invalid`` rows of the gatherer's ``gap`` markers."""
    return [
        GapRow(**dict(zip(GapRow._fields, item.detail["row"], strict=True)))
        for item in rec.journal
        if item.kind == "gap" and item.detail["row"][6] == "book_invalid"
    ]


def test_the_replayed_journal_ends_each_gap_at_its_resnapshot() -> None:
    truth = make_truth(14, events=320)
    (rec,) = recordings(truth, {"g0": [MISMATCH]})
    opened = _journaled(rec)
    tickers = [row.ticker for row in opened]
    assert tickers == sorted(truth.markets)  # every market lost a delta in the stretch
    ob = rec.journal[0].conn_id  # the order-book connection (the first one opened)
    for row in opened:
        assert (row.conn_id, row.sid, row.end_ts) == (ob, 1, None)
        assert row.detail == DETAIL.format(row.ticker)
    resnapshots = {
        s.ticker: s.received_at
        for s in rec.orderbook_snapshots
        if s.received_at > min(row.start_ts for row in opened)
    }
    # each gap as journaled, then its copy ended at the market's resnapshot
    assert rec.gaps == [
        *opened,
        *(row._replace(end_ts=resnapshots[str(row.ticker)]) for row in opened),
    ]
    assert all(resnapshots[str(r.ticker)] > r.start_ts for r in opened)


async def test_the_merge_takes_the_other_gatherers_rows_where_a_book_was_wrong(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(14, events=320)
    misses = {"g0": [MISMATCH], "g1": [(20, 60, "seq_gap")]}
    urls = await write_all(make_db, recordings(truth, misses), tmp_path)
    with connect_db(urls["g0"]) as db:
        stored = db.query(
            "SELECT ticker, end_ts > start_ts, detail FROM gaps WHERE kind = 'book_invalid'"
            " ORDER BY ticker"
        )
    assert stored == [(t, True, DETAIL.format(t)) for t in sorted(truth.markets)]
    assert holes(truth, list(misses.values())) == []
    production = make_db()
    report = await merge_once(production, urls)
    assert report.holes == 0 and report.switches > 0
    # every delta of the truth, the books the truth's: g1's rows where g0's book was wrong
    assert_production_is_truth(production, truth, misses)


async def test_a_book_wrong_by_rest_that_no_other_gatherer_has_is_a_merge_hole(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(14, events=320)
    misses = {"g0": [MISMATCH]}
    urls = await write_all(make_db, recordings(truth, misses), tmp_path)
    production = make_db()
    report = await merge_once(production, urls)
    expected = holes(truth, list(misses.values()))
    assert [t for t, _ in expected] == sorted(truth.markets)  # one stretch per market
    assert report.holes == len(expected)
    # the deltas g0 kept, a merge_hole per market from its last good delta to the
    # resnapshot, and the books right again after it
    assert_production_is_truth(production, truth, misses)
