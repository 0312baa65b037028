"""`snapshot --at` from the database and from the journal equals the book built directly
with OrderBook at sampled times (hypothesis); gaps freeze the book; clear NoBook errors."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from functools import partial
from pathlib import Path

import orjson
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replay_support import (
    BASE_US,
    OB_CONN,
    T1,
    T2,
    Entry,
    delta,
    frame,
    kalshi,
    scripted_session,
    snapshot,
    store_config,
    subscribed,
    write_journal,
)

from kalshi.book import OrderBook
from kalshi.gather.connection import Connection
from kalshi.journal import JournalRecord, JournalWriter, read_journal
from kalshi.models.book import BookDelta, BookSnapshot, Side
from kalshi.models.units import format_price, format_rfc3339_us, format_size
from kalshi.replay import NoBook, book_from_db, book_from_journal, replay_into_db
from kalshi.replay.source import STOP_GRACE_US, SourceOptions, read_records
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from kalshi.testing.memory import memory_connector
from tests.gather.test_connection_timing import context, row_sink, sim_exchange, virtual_wall_us
from tests.journal.journal_support import inline, journal_config

# Bids below $0.50 on both sides: a YES bid and a NO bid never sum to $1, so no book is ever
# crossed (a lasting cross marks a book stale until its resnapshot, kalshi-api.md §4.5).
PRICES = [1000 * p for p in range(1, 50, 3)]
_names = itertools.count(1)

# An operation: ("snap", ticker_index, yes levels, no levels) or
# ("delta", ticker_index, side is yes, price, size to add or fraction to take away).
levels = st.dictionaries(st.sampled_from(PRICES), st.integers(1, 50_00), max_size=4)
operation = st.one_of(
    st.tuples(st.just("snap"), st.integers(0, 1), levels, levels),
    st.tuples(
        st.just("delta"),
        st.integers(0, 1),
        st.booleans(),
        st.sampled_from(PRICES),
        st.integers(-4, 30_00).filter(bool),
    ),
)


def _script(
    tickers: tuple[str, str], ops: list[tuple[object, ...]], conn_id: int = OB_CONN
) -> tuple[list[Entry], list[tuple[int, dict[str, OrderBook]]]]:
    """Frames for ``ops`` (each ticker starts with a snapshot) and the true books after
    each frame: ``(wall_us, {ticker: book})``."""
    books = {t: OrderBook(t) for t in tickers}
    has_snapshot: set[str] = set()
    entries: list[Entry] = [("in", conn_id, 1, BASE_US, subscribed(1, "orderbook_delta"))]
    truth: list[tuple[int, dict[str, OrderBook]]] = []
    wall, seq = BASE_US, 0
    first = [("snap", 0, {}, {}), ("snap", 1, {}, {})]
    for n, op in enumerate(first + ops):
        ticker = tickers[int(op[1])]  # type: ignore[call-overload]
        book = books[ticker]
        if op[0] == "snap":
            yes, no = dict(op[2]), dict(op[3])  # type: ignore[call-overload]
            book.apply_snapshot(
                BookSnapshot(ticker, "", tuple(sorted(yes.items())), tuple(sorted(no.items())))
            )
            has_snapshot.add(ticker)
            raw = snapshot(
                1, seq + 1, ticker,
                yes=[(format_price(p), format_size(s)) for p, s in sorted(yes.items())],
                no=[(format_price(p), format_size(s)) for p, s in sorted(no.items())],
            )  # fmt: skip
        else:
            _, _, is_yes, price, amount = op
            side = Side.YES if is_yes else Side.NO
            assert isinstance(price, int) and isinstance(amount, int)
            have = book.side(side).get(price, 0)
            change = amount if amount > 0 else -(have * -amount // 4)  # take 1/4..4/4 away
            if change == 0:
                continue
            book.apply_delta(BookDelta(ticker, "", side, price, change))
            raw = delta(1, seq + 1, ticker, format_price(price), format_size(change), side.value)
        seq += 1
        wall += 1 + (n * 37) % 500
        entries.append(("in", conn_id, len(entries) + 1, wall, raw))
        truth.append((wall, {t: b.copy() for t, b in books.items()}))
    return entries, truth


def _samples(truth: list[tuple[int, dict[str, OrderBook]]], picks: list[int]) -> list[int]:
    times = [wall for wall, _ in truth][1:]  # from the moment both markets have a book
    # ... to the journal's last record (past it the journal answer is stale: nothing read)
    return sorted(
        {min(times[i % len(times)] + offset, times[-1]) for i in picks for offset in (0, 1)}
    )


def _expected(truth: list[tuple[int, dict[str, OrderBook]]], at: int, ticker: str) -> OrderBook:
    book = OrderBook(ticker)
    for wall, books in truth:
        if wall <= at:
            book = books[ticker]
    return book


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(operation, max_size=25),
    picks=st.lists(st.integers(0, 1000), min_size=1, max_size=4),
)
async def test_book_at_matches_ground_truth(
    db_url: str, ops: list[tuple[object, ...]], picks: list[int]
) -> None:
    n = next(_names)
    # One database for every example: own tickers and connection (identity keys differ).
    tickers = (f"PIT-{n}-A", f"PIT-{n}-B")
    entries, truth = _script(tickers, ops, OB_CONN + n)
    tmp = Path(tempfile.mkdtemp(prefix="kalshi-pit-"))
    try:
        files = await write_journal(tmp / "journal", entries)
        with trio.fail_after(60):
            await replay_into_db(read_journal(files), db_url, store_config(tmp))
        with connect_db(db_url) as db:
            for at in _samples(truth, picks):
                for ticker in tickers:
                    expected = _expected(truth, at, ticker)
                    from_db = book_from_db(db, ticker, at)
                    from_journal = book_from_journal(read_journal(files), ticker, at)
                    assert from_db.book == expected, (at, ticker)
                    assert from_journal.book == expected, (at, ticker)
                    assert (from_db.stale, from_journal.stale) == (False, False)
                    assert from_db.as_of_us == from_journal.as_of_us <= at
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _book(yes: dict[int, int], no: dict[int, int]) -> OrderBook:
    book = OrderBook("")
    book.yes, book.no = yes, no
    return book


async def test_a_seq_gap_freezes_the_book_until_the_resnapshot(db_url: str, tmp_path: Path) -> None:
    files = await write_journal(tmp_path / "journal", scripted_session())
    await replay_into_db(read_journal(files), db_url, store_config(tmp_path))
    at_gap, after_resnapshot = BASE_US + 700, BASE_US + 900
    with connect_db(db_url) as db:
        sources = [
            lambda t, at: book_from_db(db, t, at),
            lambda t, at: book_from_journal(read_journal(files), t, at),
        ]
        for get in sources:
            frozen_t1 = get(T1, at_gap)
            assert frozen_t1.book == _book({40000: 1000, 42000: 300}, {55000: 700})
            assert frozen_t1.stale and frozen_t1.as_of_us == BASE_US + 400
            frozen_t2 = get(T2, at_gap)
            assert frozen_t2.book == _book({10000: 100}, {60000: 350})
            assert frozen_t2.stale
            fresh = get(T1, after_resnapshot)
            assert fresh.book == _book({40000: 1100, 41000: 200}, {})
            assert (fresh.stale, fresh.as_of_us) == (False, after_resnapshot)


async def test_no_book_errors_say_why(db_url: str, tmp_path: Path) -> None:
    files = await write_journal(tmp_path / "journal", scripted_session())
    await replay_into_db(read_journal(files), db_url, store_config(tmp_path))
    early = BASE_US + 150
    with connect_db(db_url) as db:
        with pytest.raises(NoBook, match=r"^NOPE: no order book stored for this ticker$"):
            book_from_db(db, "NOPE", None)
        # Outside tester F6 (pbreak8): a time before the data, the same words on both routes.
        before = rf"^{T1}: no order book recorded at or before 2026-11-24T22:59:00.001150Z$"
        with pytest.raises(NoBook, match=before):
            book_from_db(db, T1, early)
        with pytest.raises(NoBook, match=r"^NOPE: no order book recorded at or before 2026-"):
            book_from_db(db, "NOPE", early)
    with pytest.raises(NoBook, match=r"^NOPE: not in the journal$"):
        book_from_journal(read_journal(files), "NOPE")
    with pytest.raises(NoBook, match=before):
        book_from_journal(read_journal(files), T1, early)
    with pytest.raises(NoBook, match=r"^NOPE: no order book recorded at or before 2026-"):
        book_from_journal(read_journal(files), "NOPE", early)


async def test_rest_source_reads_the_simulator(tmp_path: Path) -> None:
    from kalshi.auth import Signer, load_private_key
    from kalshi.net import RestClient, system_wall_us
    from kalshi.replay import book_from_rest

    with trio.fail_after(30):
        async with open_sim_exchange(markets=5, rate=50.0, seed=3, start_us=PINNED_START_US) as sim:
            sim.engine.pause()
            sim.engine.step(20)
            signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
            ticker = max(sim.truth.books, key=lambda t: len(sim.truth.books[t]))
            assert len(sim.truth.book(ticker)) > 0
            async with RestClient(sim.rest_url, signer) as rest:
                got = await book_from_rest(rest, ticker, system_wall_us())
                assert got.book == sim.truth.book(ticker)
                with pytest.raises(NoBook, match=r"^NO-SUCH: unknown ticker \(REST 404\)$"):
                    await book_from_rest(rest, "NO-SUCH", system_wall_us())


async def test_a_market_dropped_live_is_no_longer_recorded(tmp_path: Path) -> None:
    delete = (
        b'{"id":2,"cmd":"update_subscription","params":{"sids":[1],"market_tickers":["'
        + T1.encode()
        + b'"],"action":"delete_markets"}}'
    )
    entries = [e for e in scripted_session() if e[0] != "marker"]
    entries.insert(8, ("out", OB_CONN, 4, BASE_US + 450, delete))
    files = await write_journal(tmp_path / "journal", entries)
    before = book_from_journal(read_journal(files), T1, BASE_US + 449)
    assert before.book == _book({40000: 1000, 42000: 300}, {55000: 700})
    with pytest.raises(
        NoBook, match=rf"^{T1}: no longer recorded at 2026-11-24T22:59:00.001500Z: unsubscribed$"
    ):
        book_from_journal(read_journal(files), T1, BASE_US + 500)


async def test_a_settled_market_has_no_book_on_either_route(db_url: str, tmp_path: Path) -> None:
    """Outside tester F3 (pbreak8): after its ``determined`` event the database gave the
    last book, stale, exit 0, the journal an error, exit 1; now both say the same, exit 1."""
    lc, t = OB_CONN + 2, BASE_US
    determined = frame(
        "market_lifecycle_v2", 1, 1, market_ticker=T1, event_type="determined",
        determination_ts=1_795_561_141, result="yes", settlement_value="1.0000",
    )  # fmt: skip
    entries = scripted_session()
    entries[-1:-1] = [
        ("marker", lc, "connect", t + 3, {"label": "lifecycle-0", "channels": ["lifecycle"]}),
        ("in", lc, 1, t + 4, subscribed(1, "market_lifecycle_v2")),
        ("in", lc, 2, t + 1000, determined),
    ]
    files = await write_journal(tmp_path / "journal", entries)
    await replay_into_db(read_journal(files), db_url, store_config(tmp_path))
    ended = (
        f"{T1}: no longer recorded at 2026-11-24T22:59:00.002000Z: market determined at "
        "2026-11-24T22:59:01.000000Z"
    )
    with connect_db(db_url) as db:
        assert book_from_db(db, T1, t + 999).book == _book({40000: 1100, 41000: 200}, {})
        with pytest.raises(NoBook, match=f"^{ended}$"):
            book_from_db(db, T1, t + 1000)
    assert book_from_journal(read_journal(files), T1, t + 999).book == _book(
        {40000: 1100, 41000: 200}, {}
    )
    with pytest.raises(NoBook, match=f"^{ended}$"):
        book_from_journal(read_journal(files), T1, t + 1000)
    at = str(t + 1000)
    by_journal = kalshi(
        "snapshot", str(tmp_path / "journal"), "--ticker", T1, "--at", at, cwd=tmp_path
    )
    by_db = kalshi("snapshot", "--ticker", T1, "--at", at, "--db", db_url, cwd=tmp_path)
    for result in (by_journal, by_db):
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"error: {ended}\n")


_GAP = "INSERT INTO gaps VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s)"


async def test_a_recorded_gap_or_a_close_marks_the_db_book_stale(
    db_url: str, tmp_path: Path
) -> None:
    """Outside tester F3: inside an outage or a merge hole, or after the market closed, the
    last book is not current: stale, with the gap's kind and span."""
    files = await write_journal(tmp_path / "journal", scripted_session())
    await replay_into_db(read_journal(files), db_url, store_config(tmp_path))
    t = BASE_US
    with connect_db(db_url) as db:
        # The gatherer recorded until its disconnect at t+5000 (its watermark; a replay
        # writes none): no "nothing journaled" before.
        db.execute("INSERT INTO ingest_watermark VALUES ('g-1', %s, %s)", (t + 5001, t + 5001))
        before = book_from_db(db, T1, t + 1500)
        assert (before.stale, before.detail, before.as_of_us) == (False, "", t + 900)
        # The gatherer was down from t+2000 to t+4000 (the new session's connection id).
        down = "orderbook-0: gatherer down since its last orderbook_delta frame"
        db.execute(_GAP, (t + 2000, t + 4000, "g-1", OB_CONN + 9, 1, None, "outage", down))
        # Another gatherer's outage, a trade connection's and a trade backfill: not this book.
        db.execute(_GAP, (t + 2000, t + 4000, "g-2", 7, 1, None, "outage", down))
        trades_down = "trade-0: gatherer down since its last trade frame"
        db.execute(_GAP, (t + 1000, t + 4000, "g-1", 8, 1, None, "outage", trades_down))
        db.execute(_GAP, (t + 1000, None, "g-1", 0, None, T1, "backfill", "trades due"))
        # Production's channel hole of the trades (no gatherer connected): not the book's.
        no_trades = "trade: no gatherer connected (g-1, g-2)"
        db.execute(_GAP, (t + 1000, t + 9000, "dedup", 0, 1, None, "merge_hole", no_trades))
        assert book_from_db(db, T1, t + 1999).stale is False
        span = "2026-11-24T22:59:00.003000Z to 2026-11-24T22:59:00.005000Z"
        for at in (t + 2000, t + 3999, t + 4000, None):  # no resnapshot after it
            inside = book_from_db(db, T1, at)
            assert (inside.stale, inside.as_of_us) == (True, t + 900)
            assert inside.detail == f"outage from {span}: {down}"
        # The production's merge hole of T2 (gatherer dedup, per market), open-ended.
        hole = "no gatherer has this stretch; resumed from g-2's snapshot"
        db.execute(_GAP, (t + 600, t + 700, "dedup", 0, None, T2, "merge_hole", hole))
        in_hole = book_from_db(db, T2, t + 650)
        assert in_hole.stale
        assert in_hole.detail == (
            "merge_hole from 2026-11-24T22:59:00.001600Z to 2026-11-24T22:59:00.001700Z: " + hole
        )
        # A market closed while nobody recorded it: stale from its close on.
        db.execute(
            "INSERT INTO markets VALUES (%s, 'E', 'closed', 'binary', '', NULL, %s, 0, 'g-1',"
            " '{}')",
            (T1, t + 1200),
        )
        assert book_from_db(db, T1, t + 1199).stale is False
        closed = book_from_db(db, T1, t + 1200)
        assert (closed.stale, closed.detail) == (
            True,
            "market closed: closed at 2026-11-24T22:59:00.002200Z",
        )
        # Determined before its scheduled close (recorded by its lifecycle event).
        db.execute(
            "INSERT INTO market_lifecycle VALUES (%s, %s, 'g-1', %s, 'determined', '{}', 1, 1,"
            " NULL)",
            (t + 1150, t + 1150, T1),
        )
        assert book_from_db(db, T1, t + 1149).stale is False
        # Outside tester F3 (pbreak8): no book from then on, as from the journal.
        ended = (
            rf"^{T1}: no longer recorded at 2026-11-24T22:59:00.002150Z: market determined at "
            r"2026-11-24T22:59:00.002150Z$"
        )
        with pytest.raises(NoBook, match=ended):
            book_from_db(db, T1, t + 1150)


async def test_a_journaled_gap_or_the_journal_end_marks_the_journal_book_stale(
    tmp_path: Path,
) -> None:
    """Outside tester F3, journal source: the outage's gap marker (journaled when the
    gatherer is back) makes the book inside it stale, with its kind and span; so does a time
    after the journal's last record."""
    t = BASE_US
    down = "orderbook-0: gatherer down since its last orderbook_delta frame"
    back = OB_CONN + 9
    row = [t + 2000, t + 4000, "g-1", back, 1, None, "outage", None, None, down]
    entries = [
        *scripted_session(),
        ("marker", back, "connect", t + 4000, {"label": "orderbook-0"}),
        ("marker", back, "gap", t + 4001, {"row": row}),
    ]
    files = await write_journal(tmp_path / "journal", entries)
    before = book_from_journal(read_journal(files), T1, t + 1999)
    assert (before.stale, before.detail) == (False, "")
    span = "2026-11-24T22:59:00.003000Z to 2026-11-24T22:59:00.005000Z"
    for at in (t + 2000, t + 3999):
        inside = book_from_journal(read_journal(files), T1, at)
        assert (inside.stale, inside.as_of_us) == (True, t + 900)
        assert inside.detail == f"outage from {span}: {down}"
    # A journal whose last record is T1's delta at t+900 (no disconnect marker: killed).
    cut = await write_journal(tmp_path / "cut", scripted_session()[:-1])
    last = book_from_journal(read_journal(cut), T1, t + 900)
    assert (last.stale, last.as_of_us) == (False, t + 900)
    past = book_from_journal(read_journal(cut), T1, t + 901)
    assert (past.stale, past.as_of_us) == (True, t + 900)
    assert past.detail == (
        "nothing journaled from 2026-11-24T22:59:00.001900Z to 2026-11-24T22:59:00.001901Z:"
        " not recorded"
    )


async def test_a_reconnect_gap_journaled_long_after_the_time_makes_its_book_stale(
    autojump_clock: trio.testing.MockClock, db_url: str, tmp_path: Path
) -> None:
    """A gatherer's order-book connection against the simulator, on virtual time: the
    exchange goes silent, then refuses connections for 40 s, so the ``reconnect`` gap that
    covers a time 1 s into the silence is journaled about 45 s after it, far past the point
    -in-time read's 10 s stop. The journal answer reads on for it: stale, with the gap's
    exact kind, span and detail, as the database answer (the same journal replayed into
    PostgreSQL) says too."""
    async with (
        sim_exchange(clock=virtual_wall_us) as sim,
        trio.open_nursery() as nursery,
    ):
        journal = JournalWriter(
            journal_config(tmp_path), "t1", wall_us=virtual_wall_us, run_sync=inline
        )
        await nursery.start(journal.run)
        ctx = context(
            sim,
            tmp_path,
            memory_connector(sim),
            row_sink(nursery),
            **{
                "websocket.silence_timeout": "5s",
                "websocket.ping_interval": "1s",
                "websocket.reconnect_backoff": "1s",
                "websocket.max_reconnect_backoff": "8s",
            },
        )
        ctx.wall_us = virtual_wall_us
        ctx.journal = journal
        conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
        conn.add(sim.engine.active_tickers)
        nursery.start_soon(conn.run)
        while conn.state != "live":  # noqa: ASYNC110 - state of the task under test
            await trio.sleep(0.01)
        await trio.sleep(3)
        sim.faults.go_silent(60)
        sim.faults.refuse_connections(40)
        while ctx.gaps["reconnect"] == 0:  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.sleep(1)
        await journal.flush()
        nursery.cancel_scope.cancel()
    files = [str(p) for p in sorted((tmp_path / "journal").rglob("*.jsonl"))]
    (marker,) = [r for r in read_journal(files) if r.kind == "gap"]
    start, end, *_, detail = marker.detail["row"]
    assert (marker.label, marker.detail["row"][6]) == ("orderbook-0", "reconnect")
    at = start + 1_000_000
    assert marker.wall_us > at + STOP_GRACE_US  # journaled long past the read's stop
    ticker = sim.engine.active_tickers[0]
    span = f"{format_rfc3339_us(start, digits=6)} to {format_rfc3339_us(end, digits=6)}"
    why = f"reconnect from {span}: {detail}"
    assert detail.startswith("orderbook-0: ")
    found = book_from_journal(read_records(files, SourceOptions(until_us=at)), ticker, at)
    assert (found.stale, found.detail) == (True, why)
    just_before = start - 1  # the gap's span starts at its last frame, inclusive
    read = read_records(files, SourceOptions(until_us=just_before))
    before = book_from_journal(read, ticker, just_before)
    assert (before.stale, before.detail) == (False, "")
    # The store on the real clock, in a run of its own (virtual time would jump its timeouts
    # while its worker threads write).
    replay = partial(trio.run, replay_into_db, read_journal(files), db_url, store_config(tmp_path))
    await trio.to_thread.run_sync(replay)
    with connect_db(db_url) as db:
        stored = book_from_db(db, ticker, at)
        assert (stored.stale, stored.detail, stored.book) == (True, why, found.book)
        assert book_from_db(db, ticker, just_before).stale is False


def test_an_unmigrated_database_is_named_so(empty_db_url: str, tmp_path: Path) -> None:
    """Outside tester N8 (pbreak9): a database without our tables said only ``relation
    "market_lifecycle" does not exist``; now it says it is not migrated and how to fix it."""
    result = kalshi(
        "snapshot", "--ticker", T1, "--at", str(BASE_US), "--db", empty_db_url, cwd=tmp_path
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        'error: relation "market_lifecycle" does not exist: the database is not migrated (not'
        " a kalshi database?): run `kalshi db migrate`\n",
    )


async def test_past_the_last_record_the_db_book_is_stale_as_the_journals(
    db_url: str, tmp_path: Path
) -> None:
    """Outside tester N3 (pbreak9): a gatherer's database said ``stale: false`` at any time
    after the gatherer stopped, the journal ``nothing journaled from ...``; now both say it,
    in the same words (a journal killed after T1's delta at t+900, replayed into
    PostgreSQL)."""
    t = BASE_US
    cut = await write_journal(tmp_path / "cut", scripted_session()[:-1])
    await replay_into_db(read_journal(cut), db_url, store_config(tmp_path))
    past = (
        "nothing journaled from 2026-11-24T22:59:00.001900Z to 2026-11-24T22:59:00.001901Z:"
        " not recorded"
    )
    with connect_db(db_url) as db:
        last = book_from_db(db, T1, t + 900)
        assert (last.stale, last.detail, last.as_of_us) == (False, "", t + 900)
        after = book_from_db(db, T1, t + 901)
        assert (after.stale, after.detail, after.as_of_us) == (True, past, t + 900)
        # A watermark past the time: the gatherer was recording then (nothing came).
        db.execute("INSERT INTO ingest_watermark VALUES ('g-1', %s, %s)", (t + 902, t + 902))
        assert book_from_db(db, T1, t + 901).stale is False
        assert book_from_db(db, T1, t + 902).detail == (
            "nothing journaled from 2026-11-24T22:59:00.001902Z to 2026-11-24T22:59:00.001902Z:"
            " not recorded"
        )
    assert book_from_journal(read_journal(cut), T1, t + 901).detail == past


async def test_a_market_finalized_while_its_gatherer_was_down_has_no_book(
    db_url: str, tmp_path: Path
) -> None:
    """Outside tester N4 (pbreak9): a market settled during the gatherer's outage (no
    lifecycle event recorded), its ``markets`` row ``finalized`` from the listing after the
    restart: the database gave the last book, stale (outage), exit 0, where a gatherer that
    saw the event (and production) gave no book, exit 1; now the same."""
    files = await write_journal(tmp_path / "journal", scripted_session())
    await replay_into_db(read_journal(files), db_url, store_config(tmp_path))
    t = BASE_US
    down = "orderbook-0: gatherer down since its last orderbook_delta frame"
    outage = "outage from 2026-11-24T22:59:00.003000Z to 2026-11-24T22:59:00.005000Z: " + down
    listed = (
        "INSERT INTO markets VALUES (%s, 'E', %s, 'binary', '', NULL, %s, %s, 'g-1', %s)"
        " ON CONFLICT (ticker) DO UPDATE SET status = EXCLUDED.status,"
        " updated_at = EXCLUDED.updated_at, payload = EXCLUDED.payload"
    )
    with connect_db(db_url) as db:
        db.execute("INSERT INTO ingest_watermark VALUES ('g-1', %s, %s)", (t + 5001, t + 5001))
        db.execute(_GAP, (t + 2000, t + 4000, "g-1", OB_CONN + 9, 1, None, "outage", down))
        # Closed at t+2500, settled at t+3000 (the listing's settlement_ts), listed at t+4000.
        payload = '{"status": "finalized", "settlement_ts": "2026-11-24T22:59:00.004Z"}'
        db.execute(listed, (T1, "finalized", t + 2500, t + 4000, payload))
        assert book_from_db(db, T1, t + 2999).detail == outage
        settled = (
            f"{T1}: no longer recorded at 2026-11-24T22:59:00.004000Z: market settled at "
            "2026-11-24T22:59:00.004000Z"
        )
        with pytest.raises(NoBook, match=f"^{settled}$"):
            book_from_db(db, T1, t + 3000)
        by_db = kalshi(
            "snapshot", "--ticker", T1, "--at", str(t + 3000), "--db", db_url, cwd=tmp_path
        )
        assert (by_db.returncode, by_db.stdout, by_db.stderr) == (1, "", f"error: {settled}\n")
        # Determined, no settlement_ts yet: ended by the later of its close and the listing.
        db.execute(listed, (T1, "determined", t + 2500, t + 4000, '{"status": "determined"}'))
        assert book_from_db(db, T1, t + 3999).detail == outage
        with pytest.raises(
            NoBook,
            match=rf"^{T1}: no longer recorded at 2026-11-24T22:59:00.005000Z: market determined"
            r" at or before 2026-11-24T22:59:00.005000Z$",
        ):
            book_from_db(db, T1, t + 4000)


async def test_a_journaled_listing_of_a_finalized_market_ends_its_book_on_both_routes(
    db_url: str, tmp_path: Path
) -> None:
    """Outside tester N4 (pbreak9), journal route: the REST listing journaled after the
    restart says ``finalized`` (settled at t+920), and no lifecycle event was recorded: from
    the listing on, no book, in the database route's words (the same journal replayed)."""
    t = BASE_US
    market = orjson.loads((Path(__file__).parent.parent / "data/rest/market.json").read_bytes())
    market["market"].update(
        ticker=T1,
        status="finalized",
        close_time="2026-11-24T22:59:00.0019Z",
        settlement_ts="2026-11-24T22:59:00.00192Z",
    )
    body = orjson.dumps({"markets": [market["market"]], "cursor": ""})
    listing = JournalRecord(
        "g-1", 0, 0, "in", t + 950, t + 950, "rest", body, {"path": "/markets", "shard": "0/1"}
    )
    files = await write_journal(tmp_path / "journal", scripted_session())
    items = list(read_journal(files))
    items.insert(next(i for i, r in enumerate(items) if r.wall_us > t + 950), listing)
    settled = (
        f"{T1}: no longer recorded at 2026-11-24T22:59:00.001950Z: market settled at "
        "2026-11-24T22:59:00.001920Z"
    )
    before = book_from_journal(items, T1, t + 949)  # the listing not read yet
    assert (before.book, before.stale) == (_book({40000: 1100, 41000: 200}, {}), False)
    with pytest.raises(NoBook, match=f"^{settled}$"):
        book_from_journal(items, T1, t + 950)
    await replay_into_db(items, db_url, store_config(tmp_path))
    with connect_db(db_url) as db, pytest.raises(NoBook, match=f"^{settled}$"):
        book_from_db(db, T1, t + 950)
