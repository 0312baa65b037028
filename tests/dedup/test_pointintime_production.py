"""``kalshi snapshot --source db`` on a production database (outside tester F1, fresh clone
at 9649abf): the deduplicator switches a market between gatherers without a new snapshot
row, and the point-in-time book must follow the merged stream across every switch, not
only the deltas of the latest snapshot's gatherer and connection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dedup_support import MISSES, merge_once, recordings, write_all

from kalshi.book import OrderBook
from kalshi.dedup.books import book_before, stream_cut
from kalshi.models.units import format_rfc3339_us
from kalshi.replay import book_from_db
from kalshi.store import connect_db
from kalshi.testing.recording import Truth, make_truth


def _quiet_points(truth: Truth, slowest_us: int) -> list[tuple[int, int]]:
    """``(index, at)``: a receive time ``at`` by which every gatherer has received event
    ``index`` and the events before it, and none a later one. Gatherers receive an event
    600 to ``slowest_us`` µs after its exchange time, a few µs later when events share a
    millisecond (kalshi.testing.recording.journal); exchange times step by whole
    milliseconds."""
    points = []
    events = truth.events
    for i in range(len(events) - 1):
        done = max(e.exchange_ts for e in events[: i + 1])
        upcoming = min(e.exchange_ts for e in events[i + 1 :])
        if upcoming > done:  # at least 1 ms later: a receive time between both
            points.append((i, done + slowest_us + 50))
    return points


def _truth_after(truth: Truth, index: int, ticker: str) -> OrderBook:
    book = truth.start[ticker].copy()
    for event in truth.events[: index + 1]:
        if event.kind == "delta" and event.ticker == ticker:
            levels = book.yes if event.side else book.no
            size = levels.get(event.price, 0) + event.size
            if size:
                levels[event.price] = size
            else:
                levels.pop(event.price, None)
    return book


async def test_the_production_book_at_any_time_is_the_truth_across_source_switches(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(11, events=320)
    urls = await write_all(make_db, recordings(truth, MISSES), tmp_path)  # 600/750/900 µs late
    production = make_db()
    report = await merge_once(production, urls, batch_size=37)
    assert report.switches > 0
    points = _quiet_points(truth, 900)
    exact = stale = 0
    with connect_db(production) as db:
        holes = db.query(
            "SELECT ticker, start_ts, end_ts FROM gaps WHERE kind = 'merge_hole' ORDER BY 2"
        )
        assert holes  # MISSES leaves stretches nobody kept
        # The markets whose stream continued on another gatherer's rows without a snapshot.
        switched = db.query(
            "SELECT count(DISTINCT d.ticker) FROM orderbook_deltas d JOIN orderbook_deltas e"
            " ON e.ticker = d.ticker AND e.seq = d.seq + 1 AND e.gatherer_id <> d.gatherer_id"
        )
        assert switched == [(len(truth.markets),)]
        for index, at in points:
            for ticker in truth.markets:
                got = book_from_db(db, ticker, at)
                if got.stale:
                    # Only inside a merge hole of the market (until its restart snapshot).
                    assert got.detail.startswith("merge_hole from "), got.detail
                    assert any(
                        t == ticker and start - 4_000 <= at and at < end + 10_000
                        for t, start, end in holes
                    ), (ticker, at)
                    stale += 1
                    continue
                assert got.book == _truth_after(truth, index, ticker), (ticker, index, at)
                assert got.as_of_us <= at
                exact += 1
        # Every market is checked exactly at many points, after switches as well.
        assert exact > 10 * stale > 0
        # The latest book: the end of the stream, the truth's final book.
        for ticker in truth.markets:
            latest = book_from_db(db, ticker)
            assert (latest.book, latest.stale) == (truth.books[ticker], False)
            end = stream_cut(db, ticker, 2**62)
            assert book_before(db, ticker, end).book == truth.books[ticker]
        # Outside tester N3 (pbreak9): past what the deduplicator merged (its cursors'
        # horizon), the book is stale as the journal's past its last record (it said
        # current at any later time).
        ((merged,),) = db.query(
            "SELECT max(horizon) FROM dedup_cursors WHERE table_name = 'orderbook_deltas'"
        )
        for ticker in truth.markets:
            assert book_from_db(db, ticker, merged).detail == ""
            past = book_from_db(db, ticker, merged + 1)
            assert (past.book, past.stale, past.detail) == (
                truth.books[ticker],
                True,
                f"nothing journaled from {format_rfc3339_us(merged, digits=6)} to"
                f" {format_rfc3339_us(merged + 1, digits=6)}: not recorded",
            )
