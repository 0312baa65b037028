"""Real Kalshi frames (tests/data/kalshi-gold15m: three 15-minute gold markets recorded live
by a third party, filtered from a wider subscription) replayed as given: every value of the
independent ``expected.json`` reproduced, through JSON lines, PostgreSQL and point in time."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from replay_support import stored

from kalshi.book import OrderBook
from kalshi.journal import JournalRecord
from kalshi.models.book import Side
from kalshi.replay import Replayer, book_from_db, book_from_journal
from kalshi.replay.source import STOP_GRACE_US, SourceOptions, read_records
from kalshi.store import connect_db

GOLD = Path(__file__).parent.parent / "data" / "kalshi-gold15m"
EXPECTED: dict[str, Any] = orjson.loads((GOLD / "expected.json").read_bytes())
WINDOWS = sorted(EXPECTED)

# Rows per table per window (cryptofeed-style golden counts): replay of each file as given.
GOLDEN = {
    "KXGOLD15M-26AUG050000-00": {
        "orderbook_snapshots": 2,
        "orderbook_deltas": 37_092,
        "trades": 1_033,
        "gaps": 0,
    },
    "KXGOLD15M-26AUG050800-00": {
        "orderbook_snapshots": 2,
        "orderbook_deltas": 28_614,
        "trades": 399,
        "gaps": 0,
    },
    "KXGOLD15M-26AUG051300-00": {
        "orderbook_snapshots": 2,
        "orderbook_deltas": 35_132,
        "trades": 1_208,
        "gaps": 0,
    },
}


# Frames of each window that followed a skipped seq (other markets' frames, filtered out).
AFTER_SKIP = {
    "KXGOLD15M-26AUG050000-00": 14_812,
    "KXGOLD15M-26AUG050800-00": 11_739,
    "KXGOLD15M-26AUG051300-00": 16_689,
}


def capture(window: str) -> Path:
    return GOLD / "events" / window / "2026-08-05.ndjson.gz"


def kalshi(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        capture_output=True,
        input=stdin,
        timeout=300,
        check=False,
        cwd=cwd,
    )


def best_first(book: OrderBook) -> dict[str, list[list[int]]]:
    """The book as expected.json writes it: bids per side, best first."""
    return {
        "yes": [list(level) for level in reversed(book.levels(Side.YES))],
        "no": [list(level) for level in reversed(book.levels(Side.NO))],
    }


def instants(window: str) -> list[tuple[int, dict[str, Any]]]:
    """(µs covering every frame with recv_ms <= T, expected book)."""
    return [(int(t) * 1000 + 999, book) for t, book in EXPECTED[window]["book_at_recv_ms"].items()]


def books_from_rows(rows: list[dict[str, Any]], ticker: str, at_us: int) -> OrderBook:
    """Build a book from replayed snapshot and delta rows (independently of the pipeline)."""
    book = OrderBook(ticker)
    for row in rows:
        if row["received_at"] > at_us or row.get("ticker") != ticker:
            continue
        if row["table"] == "orderbook_snapshots":
            book.yes = {p: s for p, s in row["yes_bids"]}
            book.no = {p: s for p, s in row["no_bids"]}
        elif row["table"] == "orderbook_deltas":
            side = book.yes if row["side"] else book.no
            side[row["price"]] = side.get(row["price"], 0) + row["size_delta"]
            if side[row["price"]] == 0:
                del side[row["price"]]
    return book


@pytest.mark.parametrize("window", WINDOWS)
def test_replay_as_jsonl_reproduces_expected(window: str, tmp_path: Path) -> None:
    result = kalshi(
        "replay", str(capture(window)), "--format", "jsonl", "--continuity", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert dict(Counter(row["table"] for row in rows)) == {
        k: v for k, v in GOLDEN[window].items() if v
    }
    expected = EXPECTED[window]
    trades = {row["trade_id"]: row["size"] for row in rows if row["table"] == "trades"}
    assert (len(trades), sum(trades.values())) == (
        expected["distinct_trades"],
        expected["trade_volume"],
    )
    for at_us, book in instants(window):
        assert best_first(books_from_rows(rows, window, at_us)) == book, at_us
    assert best_first(books_from_rows(rows, window, 2**62)) == expected["final_book"]
    report = result.stderr.decode().splitlines()
    assert report[0] == "continuity:"
    assert "seq check filtered (auto: " in report[1]
    counts = expected["frames"]
    assert report[2] == (
        f"  {window}: {counts['orderbook_snapshot']} snapshot(s), "
        f"{counts['orderbook_delta']:,} delta(s), {counts['trade']:,} trade(s) in 1 "
        f"session(s); filtered: completeness not provable ({AFTER_SKIP[window]:,} frame(s) "
        "after a skipped seq); book consistent"
    )
    frames = sum(counts.values())
    assert report[3].startswith(f"replayed {frames:,} frames ({frames + 1:,} journal records)")


def test_plain_zstd_and_stdin_give_the_same_rows(tmp_path: Path) -> None:
    window = "KXGOLD15M-26AUG050800-00"
    data = gzip.decompress(capture(window).read_bytes())
    (tmp_path / "w.ndjson").write_bytes(data)
    (tmp_path / "w.ndjson.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    outputs = [
        kalshi("replay", str(capture(window)), "--format", "jsonl", cwd=tmp_path),
        kalshi("replay", "w.ndjson", "--format", "jsonl", cwd=tmp_path),
        kalshi("replay", "w.ndjson.zst", "--format", "jsonl", cwd=tmp_path),
        kalshi("replay", "-", "--format", "jsonl", cwd=tmp_path, stdin=data),
    ]
    assert [r.returncode for r in outputs] == [0, 0, 0, 0]
    assert len(outputs[0].stdout.splitlines()) == sum(GOLDEN[window].values())
    assert {r.stdout for r in outputs} == {outputs[0].stdout}


def test_point_in_time_reads_only_up_to_the_instant() -> None:
    window = "KXGOLD15M-26AUG050000-00"
    lines = gzip.decompress(capture(window).read_bytes()).splitlines()
    for at_us, book in instants(window):
        read = 0

        def counted(at: int = at_us) -> Any:
            nonlocal read
            for item in read_records([capture(window)], SourceOptions(until_us=at)):
                read += isinstance(item, JournalRecord) and item.kind == "frame"
                yield item

        found = book_from_journal(counted(), window, at_us)
        assert (best_first(found.book), found.stale) == (book, False)
        until = at_us + STOP_GRACE_US
        needed = sum(orjson.loads(line)["recv_ms"] * 1000 <= until for line in lines)
        assert read == needed < len(lines)
    # The command line: the book at one instant, as JSON.
    at_us, book = instants(window)[2]
    shown = kalshi("snapshot", str(capture(window)), "--ticker", window, "--at", str(at_us),
                   "--json", cwd=Path.cwd())  # fmt: skip
    doc = orjson.loads(shown.stdout)
    assert (doc["source"], doc["stale"]) == ("journal", False)
    assert [[level["price"], level["size"]] for level in doc["no"]] == [
        [f"{p // 100000}.{p % 100000 // 10:04d}", f"{s // 100}.{s % 100:02d}"]
        for p, s in book["no"]
    ]
    # The live (contiguous) rule reads every other market's frame as a loss: stale, and why.
    at_us, _ = instants(window)[0]
    strict = book_from_journal(read_records([capture(window)]), window, at_us, "contiguous")
    assert (strict.stale, strict.detail) == (
        True,
        "sequence gap: sid 1 seq 2146529-2146642 missing",
    )


def test_into_postgresql_then_snapshot_at(db_url: str, tmp_path: Path) -> None:
    """All three files in one replay (a directory), then each file alone, then the three
    in reverse order: each row once (every later run adds nothing: its rows are already
    stored, the same counts), per window the golden rows, the trades and the books at
    every instant from the database (docs/replay.md, "Identity of a capture's rows"; the
    outside tester's 050800 file replayed alone after the directory doubled its deltas)."""
    every = {
        table: sum(GOLDEN[w][table] for w in WINDOWS)
        for table in ("orderbook_deltas", "orderbook_snapshots", "trades")
    }

    def said(counts: dict[str, int]) -> str:
        return ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items()))

    result = kalshi("replay", str(GOLD / "events"), "--db", db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[-1] == f"committed (new rows): {said(every)}"
    again = [[str(capture(w))] for w in WINDOWS] + [[str(capture(w)) for w in WINDOWS[::-1]]]
    for paths in again:
        more = kalshi("replay", *paths, "--db", db_url, cwd=tmp_path)
        assert more.returncode == 0, more.stderr
        rows = every if len(paths) > 1 else {t: GOLDEN[paths[0].split("/")[-2]][t] for t in every}
        assert more.stdout.decode().splitlines()[-2:] == [
            "committed (new rows): none",
            f"already stored (skipped): {said(rows)}",
        ]
    assert lines[0] == (
        "replayed 103,484 frames (103,488 journal records); rows: orderbook_deltas 100,838, "
        "orderbook_snapshots 6, trades 2,640"
    )
    # The recorder's seq goes on from 050000 to 050800 (one connection, filtered per market
    # into two files): one session across the two files (each file its own conn_id, from
    # its first frame); 051300's seq is below where that session began on sid 1: a new
    # connection.
    sessions = [line for line in lines if line.startswith("session ")]
    assert [line.split(": ")[0] for line in sessions] == [
        f"session {1785901540025000 + 713843} ({capture(WINDOWS[0])})",
        f"session {1785948391669000 + 135277} ({capture(WINDOWS[2])})",
    ]
    assert [line.split(": ", 1)[1].split(";")[0] for line in sessions] == [
        "67,142 frames 2026-08-05T03:45:40.025Z .. 2026-08-05T12:00:00.414Z",
        "36,342 frames 2026-08-05T16:46:31.669Z .. 2026-08-05T17:00:05.316Z",
    ]
    assert sessions[0].endswith("ended: seq restart: sid 1 seq 452674 after 13624889")
    assert sessions[1].endswith("ended: end of capture")
    with connect_db(db_url) as db:
        for window in WINDOWS:
            counts = {
                table: db.query(f"SELECT count(*) FROM {table} WHERE ticker = %s", (window,))[0][0]
                for table in ("orderbook_snapshots", "orderbook_deltas", "trades", "gaps")
            }
            assert counts == GOLDEN[window]
            trades = db.query(
                "SELECT count(DISTINCT trade_id), sum(size) FROM trades WHERE ticker = %s",
                (window,),
            )
            assert trades == [
                (EXPECTED[window]["distinct_trades"], EXPECTED[window]["trade_volume"])
            ]
            for at_us, book in instants(window):
                found = book_from_db(db, window, at_us)
                assert (best_first(found.book), found.stale) == (book, False)
        assert db.query("SELECT count(*) FROM gaps") == [(0,)]
    window = WINDOWS[1]
    at_us, book = instants(window)[3]
    shown = kalshi(
        "snapshot", "--ticker", window, "--at", str(at_us), "--json", "--db", db_url, cwd=tmp_path
    )
    doc = orjson.loads(shown.stdout)
    assert doc["stale"] is False
    assert [[level["price"], level["size"]] for level in doc["yes"]][:2] == [
        [f"{p / 100000:.4f}", f"{s / 100:.2f}"] for p, s in book["yes"][:2]
    ]


def test_replay_with_batches_larger_than_memory_commits_everything(
    empty_db_url: str, tmp_path: Path
) -> None:
    """spool.memory_rows below the delta batch size (5 000): every batch goes through the
    disk spool with the database up, and every row is committed before the replay returns."""
    window = WINDOWS[0]
    (tmp_path / "cfg.yaml").write_text("spool: {memory_rows: 1000}\n")
    result = kalshi(
        "replay", str(capture(window)), "--config", "cfg.yaml", "--db", empty_db_url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert b"acknowledged nothing" not in result.stderr
    assert b"not written" not in result.stdout
    assert b"orderbook_deltas 37,092" in result.stdout
    assert sorted(p.name for p in (tmp_path / ".kalshi").rglob("*.batch")) == []
    with connect_db(empty_db_url) as db:
        counts = {t: n for t, n in db.counts().items() if n}
    assert counts == {t: n for t, n in GOLDEN[window].items() if n}


def test_writers_in_a_second_process_store_and_say_what_inline_does(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    """--writers process on the three files: the same summary, line for line, and the same
    rows as the inline writers; replayed again, every row is already stored."""
    inline = kalshi("replay", str(GOLD / "events"), "--db", db_url, cwd=tmp_path)
    assert inline.returncode == 0, inline.stderr
    process = kalshi(
        "replay", str(GOLD / "events"), "--db", other_db_url, "--writers", "process", cwd=tmp_path
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout == inline.stdout
    assert process.stdout.decode().splitlines()[-1] == (
        "committed (new rows): orderbook_deltas 100,838, orderbook_snapshots 6, trades 2,640"
    )
    assert stored(other_db_url) == stored(db_url)
    again = kalshi(
        "replay", str(GOLD / "events"), "--db", other_db_url, "--writers", "process", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode().splitlines()[-2:] == [
        "committed (new rows): none",
        "already stored (skipped): orderbook_deltas 100,838, orderbook_snapshots 6, trades 2,640",
    ]


def test_every_form_of_a_file_gives_the_same_rows(db_url: str, tmp_path: Path) -> None:
    """The three files as a directory, then the 050800 file plain, as .zst and on stdin:
    the first adds the golden rows, every other adds none (a file's identity keys come from
    the file, whatever its compression or the files read with it), and each says so; the
    050800 book after the directory's session went on into it is current, not stale."""
    window = WINDOWS[1]
    data = gzip.decompress(capture(window).read_bytes())
    (tmp_path / "one.jsonl").write_bytes(data)
    (tmp_path / "one.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    every = "orderbook_deltas 100,838, orderbook_snapshots 6, trades 2,640"
    one = "orderbook_deltas 28,614, orderbook_snapshots 2, trades 399"
    first = kalshi("replay", str(GOLD / "events"), "--db", db_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().splitlines()[-1] == f"committed (new rows): {every}"
    runs = [
        kalshi("replay", "one.jsonl", "--db", db_url, cwd=tmp_path),
        kalshi("replay", "one.jsonl.zst", "--db", db_url, cwd=tmp_path),
        kalshi("replay", "-", "--db", db_url, cwd=tmp_path, stdin=data),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    for again in runs:
        assert again.stdout.decode().splitlines()[-2:] == [
            "committed (new rows): none",
            f"already stored (skipped): {one}",
        ]
    with connect_db(db_url) as db:
        counts = {t: n for t, n in db.counts().items() if n}
    assert counts == {"orderbook_deltas": 100_838, "orderbook_snapshots": 6, "trades": 2_640}
    at_us, book = instants(window)[-1]
    found = book_from_journal(read_records([GOLD / "events"]), window, at_us)
    assert (best_first(found.book), found.stale) == (book, False)


def test_a_book_going_on_into_a_later_file_is_stale_in_the_database(
    db_url: str, tmp_path: Path
) -> None:
    """The 050800 file cut at a line boundary into two files (a recorder writing a file an
    hour): the journal answer follows the session across the cut (the books of
    expected.json at every instant); the database keeps each file's rows under its own
    connection, so after the cut (no snapshot in the second file) its answer is stale and
    says why, never a book that stopped at the cut; before the cut it is exact."""
    window = WINDOWS[1]
    lines = gzip.decompress(capture(window).read_bytes()).splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "a.jsonl").write_bytes(b"".join(lines[:half]))
    (tmp_path / "cut" / "b.jsonl").write_bytes(b"".join(lines[half:]))
    cut_us = orjson.loads(lines[half])["recv_ms"] * 1000
    result = kalshi("replay", "cut", "--db", db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[-1] == (
        "committed (new rows): orderbook_deltas 28,614, orderbook_snapshots 2, trades 399"
    )
    before = after = 0
    with connect_db(db_url) as db:
        for at_us, book in instants(window):
            found = book_from_journal(read_records([tmp_path / "cut"]), window, at_us)
            assert (best_first(found.book), found.stale) == (book, False)
            stored_book = book_from_db(db, window, at_us)
            if at_us < cut_us:
                before += 1
                assert (best_first(stored_book.book), stored_book.stale) == (book, False)
            else:
                after += 1
                assert stored_book.stale is True
                assert stored_book.detail.startswith("the capture's deltas go on in connection ")
    assert (before > 0, after > 0) == (True, True)


def test_frames_a_little_out_of_order_are_put_back_in_seq_order(tmp_path: Path) -> None:
    """The 050000 file with every adjacent pair received 1-5 ms apart swapped (as a
    recorder writing from two threads would): the same rows, no gap, the books of
    expected.json at every instant, one session; each swapped pair on one sid is put back
    (counted on the session line)."""
    window = WINDOWS[0]
    lines = gzip.decompress(capture(window).read_bytes()).splitlines()
    events = [orjson.loads(line) for line in lines]
    swapped = same_sid = 0
    i = 0
    while i + 1 < len(lines):
        if 1 <= events[i + 1]["recv_ms"] - events[i]["recv_ms"] <= 5:
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            swapped += 1
            same_sid += events[i]["event"]["sid"] == events[i + 1]["event"]["sid"]
            i += 2
        else:
            i += 1
    (tmp_path / "ooo.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    result = kalshi("replay", "ooo.jsonl", "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert Counter(row["table"] for row in rows) == {t: n for t, n in GOLDEN[window].items() if n}
    assert (swapped, same_sid) == (8_023, 7_792)  # the rest swap a trade with a delta
    sessions = [line for line in result.stderr.decode().splitlines() if line.startswith("session")]
    assert len(sessions) == 1
    assert f"38,127 frames ({same_sid:,} put back in seq order)" in sessions[0]
    for at_us, book in instants(window):
        assert best_first(books_from_rows(rows, window, at_us)) == book
        found = book_from_journal(read_records([tmp_path / "ooo.jsonl"]), window, at_us)
        assert (best_first(found.book), found.stale) == (book, False)


def test_a_file_mixing_two_recorders_connections_is_read_whole_and_says_where(
    tmp_path: Path,
) -> None:
    """The 050000 file merged by receive time with 051300 shifted into the same window (two
    recorders' connections in one file, their sids colliding): every frame is still read
    (the deltas and trades of both files), the frames seq puts out of order beyond the
    window are named by line, each starts a new session, and the command exits 1."""
    first, second = WINDOWS[0], WINDOWS[2]
    a, b = (
        [orjson.loads(line) for line in gzip.decompress(capture(w).read_bytes()).splitlines()]
        for w in (first, second)
    )
    shift = a[0]["recv_ms"] - b[0]["recv_ms"]
    for event in b:
        event["recv_ms"] += shift
    merged = sorted(a + b, key=lambda e: e["recv_ms"])  # stable: a's frame first on a tie
    (tmp_path / "mixed.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in merged))
    result = kalshi("replay", "mixed.jsonl", "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 1
    rows = Counter(orjson.loads(line)["table"] for line in result.stdout.splitlines())
    assert rows == {
        "orderbook_deltas": 72_224,  # 37 092 + 35 132: both files' deltas, none lost
        "trades": 2_241,  # 1 033 + 1 208
        "orderbook_snapshots": 4,
        "gaps": 8,  # the sessions' breaks: no book is trusted across them
    }
    errors = result.stderr.decode().splitlines()
    named = [line for line in errors if line.startswith("mixed.jsonl:")]
    beyond = "seq out of order beyond the reorder window (64 frames)"
    assert len(named) == 11 and all(beyond in line for line in named)
    assert named[0] == (
        f"mixed.jsonl:252: {beyond}: sid 1 seq 455343 after 2147375; a new session from"
        " here (does the file mix connections?)"
    )
    assert named[-1] == f"mixed.jsonl:0: 293 more frame(s) of {beyond}, not listed"
    assert len([line for line in errors if line.startswith("session ")]) == 356
    assert (
        "replayed 74,469 frames (75,180 journal records); rows: gaps 8, orderbook_deltas"
        " 72,224, orderbook_snapshots 4, trades 2,241"
    ) in errors
    assert errors[-1] == "seq out of order: read on in new sessions (listed above)"


def test_feed_all_is_feed_of_each_item_on_the_real_capture() -> None:
    """The flat-out replay's batches (``feed_all``, a run of frames counted at once) give
    the same rows, stats and continuity as ``feed`` item by item on the real capture: its
    sessions, the frames put back in seq order, the skipped seqs of a filtered capture."""
    items = list(read_records([GOLD / "events"]))
    each, batched = Replayer(), Replayer()
    expected = [row for item in items for row in each.feed(item)]
    got: list[Any] = []
    for at in range(0, len(items), 200):
        got += batched.feed_all(items[at : at + 200])
    assert got == expected
    assert batched.stats == each.stats
    assert batched.continuity.sessions == each.continuity.sessions
    assert batched.continuity.markets == each.continuity.markets
    assert sum(m.after_skip for m in each.continuity.markets.values()) > 0
    assert len(each.continuity.sessions) > 1
