"""A gap is stored open (``end_ts`` NULL) and closed by a later copy of the same row with
its end: the copy fills ``end_ts`` of the stored row, in another batch or in the same one,
and an end once set never changes (a second close, an open copy, a replay's rows again)."""

from __future__ import annotations

from kalshi.models.rows import GapRow
from kalshi.store import connect_db
from kalshi.store.insert import write_counted
from kalshi.store.pool import ConnectionPool
from kalshi.store.schema import TABLES

T0 = 1_767_225_600_000_000


def _gap(ticker: str, end: int | None) -> GapRow:
    return GapRow(
        start_ts=T0,
        end_ts=end,
        gatherer_id="g1",
        conn_id=7,
        sid=None,
        ticker=ticker,
        kind="subscription_refused",
        expected_seq=None,
        got_seq=None,
        detail="refused",
    )


def test_a_later_copy_closes_a_gap_once(db_url: str) -> None:
    pool = ConnectionPool(db_url, 1)
    spec = TABLES["gaps"]
    try:
        with pool.connection() as pooled:
            opened = write_counted(pooled, spec, [_gap("A", None), _gap("B", None)])
            closed = write_counted(pooled, spec, [_gap("A", T0 + 5)])
            # open and closed copies in one batch (either order): stored closed
            both = write_counted(pooled, spec, [_gap("C", T0 + 9), _gap("C", None)])
            again = write_counted(
                pooled, spec, [_gap("A", T0 + 6), _gap("A", None), _gap("B", None)]
            )
            replayed = write_counted(pooled, spec, [_gap("A", T0 + 5), _gap("C", T0 + 9)])
    finally:
        pool.close()
    assert (opened, closed, both, again, replayed) == ((2, 0), (0, 1), (1, 0), (0, 0), (0, 0))
    with connect_db(db_url) as db:
        rows = db.query("SELECT ticker, end_ts FROM gaps ORDER BY ticker")
    assert rows == [("A", T0 + 5), ("B", None), ("C", T0 + 9)]
