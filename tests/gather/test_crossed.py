"""A crossed book from the exchange (a delta that puts a YES bid at the YES ask and that the
exchange's own book never had: the simulator's ``cross_book`` fault), through a connection
on virtual time: counted per frame, one ``book_invalid`` gap row, and once the cross lasts
past ``websocket.crossed_book_frames`` frames of the market, a resnapshot that repairs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from kalshi.gather.connection import Connection
from kalshi.gather.problems import PROBLEMS_LOG_SECONDS, BookProblems, named
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US
from tests.gather.test_liveness import collecting_context, wait_state


async def test_a_crossing_delta_is_counted_recorded_and_resnapshotted(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        open_sim_exchange(
            markets=10, active=1, rate=20.0, seed=12, port=0, start_us=PINNED_START_US
        ) as sim,
        trio.open_nursery() as nursery,
    ):
        ctx, rows = collecting_context(
            sim, tmp_path, nursery, **{"websocket.crossed_book_frames": 2}
        )
        caplog.set_level("DEBUG", logger="kalshi.gather.connection")
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        (ticker,) = sim.engine.active_tickers
        conn.add([ticker])
        nursery.start_soon(conn.run)
        await wait_state(conn, "live")
        processor = ctx.processor
        while processor.books.get(ticker) != sim.truth.book(ticker):  # noqa: ASYNC110
            await trio.sleep(0.01)
        sim.engine.pause()
        assert sim.faults.cross_book() == 1
        while not processor.crossed:  # noqa: ASYNC110
            await trio.sleep(0.01)
        sim.engine.resume()  # the market's next frames: the cross lasts past 2 of them
        while ctx.resnapshots == 0:  # noqa: ASYNC110
            await trio.sleep(0.01)
        sim.engine.pause()
        while processor.books.get(ticker) != sim.truth.book(ticker):  # noqa: ASYNC110
            await trio.sleep(0.01)
        assert processor.counts["crossed_book_frames"] == 3
        assert ticker not in processor.stale and processor.crossed == {}
        gaps = rows["gaps"]
        # the gap, open, then its copy with the end: the resnapshot made the book valid
        assert [(g[5], g[6]) for g in gaps] == [(ticker, "book_invalid")] * 2
        assert "crossed book: yes bid" in gaps[0][9]
        assert gaps[1] == gaps[0]._replace(end_ts=gaps[1].end_ts)
        assert gaps[0].end_ts is None and gaps[1].end_ts > gaps[0].start_ts
        assert ctx.gaps == {"book_invalid": 1}
        assert ctx.resnapshots == 1
        assert sim.truth.faults_injected["cross_book"] == 1
        # the cross's line at DEBUG; one WARNING line for the connection's book problems
        while not _summaries(caplog):  # noqa: ASYNC110
            await trio.sleep(0.01)
        assert _summaries(caplog) == [
            f"orderbook-0: 1 book problem(s) in 1 market(s) ({ticker}): crossed 1; each"
            " counted, a book_invalid gap row or a resnapshot as its kind asks; details at"
            " DEBUG"
        ]
        assert f"orderbook-0: {gaps[0][9]}" in [
            r.getMessage() for r in caplog.records if r.levelname == "DEBUG"
        ]
        nursery.cancel_scope.cancel()


def _summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "book problem" in r.getMessage()
    ]


def test_a_summary_names_five_markets_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Per-market book problems of one connection: one WARNING line a period (count,
    markets, the first five tickers, kinds), each at DEBUG; none before the period ends,
    unless forced (the session ends)."""
    caplog.set_level("DEBUG", logger="kalshi.gather.connection")
    problems = BookProblems("orderbook-3")
    for i in range(7):
        problems.note("book_invalid", f"M{i}", f"M{i}: yes level 100 would have size -1")
    problems.note("crossed", "M0", "M0: crossed book: yes bid 50000 >= yes ask 50000")
    problems.flush(0.0)
    problems.note("book", "M9", "M9: delta before any snapshot")
    problems.flush(PROBLEMS_LOG_SECONDS - 1)  # within the period: nothing yet
    problems.flush(PROBLEMS_LOG_SECONDS - 0.5, force=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    tail = (
        "; each counted, a book_invalid gap row or a resnapshot as its kind asks; details at DEBUG"
    )
    assert warnings == [
        "orderbook-3: 8 book problem(s) in 7 market(s) (M0, M1, M2, M3, M4 and 2 more):"
        " book_invalid 7, crossed 1" + tail,
        "orderbook-3: 1 book problem(s) in 1 market(s) (M9): book 1" + tail,
    ]
    assert len([r for r in caplog.records if r.levelname == "DEBUG"]) == 9
    assert named(["B", "A", "B"]) == "A, B"
