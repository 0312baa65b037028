"""Pure rules of the export (kalshi/dedup/export.py): which gatherers a window waits for,
and what a book-stream window holds."""

from __future__ import annotations

from kalshi.dedup.export import Horizons, live_horizons, stream_digest
from kalshi.models.rows import DeltaRow

SECOND = 1_000_000


def test_windows_wait_for_every_gatherer_within_max_lag_by_exchange_time_only() -> None:
    # (gatherer, reached: exchange time, received_to: its own clock). g1's clock is 90 s
    # ahead, g2's 90 s behind: their receipts are never compared, only what they reached.
    cursors = [
        ("g1", 100 * SECOND, 190 * SECOND),
        ("g1", 98 * SECOND, 188 * SECOND),  # its slowest table counts
        ("g2", 99 * SECOND, 9 * SECOND),
        ("g3", 50 * SECOND, 50 * SECOND),  # 48 s behind the newest: not waited for
    ]
    assert live_horizons(cursors, 30 * SECOND) == Horizons(98 * SECOND, 9 * SECOND)
    assert live_horizons(cursors, 60 * SECOND) == Horizons(50 * SECOND, 9 * SECOND)
    h = Horizons(98 * SECOND, 9 * SECOND)
    assert (h.of("trades"), h.of("orderbook_snapshots")) == (98 * SECOND, 9 * SECOND)


def test_a_gatherer_whose_cursors_predate_the_mapping_is_left_out() -> None:
    # a cursor written before migration 008 has no `reached` until the next pass writes it
    assert live_horizons([("g1", None, 5), ("g1", 7, 8), ("g2", 9, 10)], 100) == Horizons(9, 10)
    assert live_horizons([("g1", None, 5)], 100) is None
    assert live_horizons([], 100) is None


def _delta(ticker: str, seq: int) -> DeltaRow:
    return DeltaRow(
        exchange_ts=seq, received_at=seq, gatherer_id="g", ticker=ticker, side=True,
        price=50, size_delta=1, conn_id=1, frame_no=seq, sid=1, seq=seq,
    )  # fmt: skip


def test_a_book_stream_digest_changes_with_its_seq_ranges_only() -> None:
    window = [_delta("A", 3), _delta("A", 4), _delta("B", 7)]
    same = stream_digest([_delta("B", 7), _delta("A", 4), _delta("A", 3)])
    assert stream_digest(window) == same
    assert stream_digest([*window, _delta("A", 5)]) != same  # a late delta joined it
    assert stream_digest(window[1:]) != same  # one moved to an earlier window
    assert same.startswith("sha256:")
