"""`kalshi replay` and `kalshi snapshot` as a user runs them: real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trio
import trio_websocket
from replay_support import (
    BASE_US,
    OB_CONN,
    T1,
    delta,
    kalshi,
    scripted_session,
    snapshot,
    store_config,
    subscribed,
    write_journal,
)

from kalshi.journal import read_journal
from kalshi.replay import JsonlSink, Replayer, ReplayFilter, replay_into_db
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing.s3server import S3Server

# the scripted session's malformed order-book frame (its sixth), as replay locates it
_MALFORMED = (
    f"gatherer g-1 conn {OB_CONN} frame 6: invalid: not JSON: "
    "unexpected end of data: line 1 column 41 (char 40)"
)


async def test_replay_to_jsonl_reports_corrupt_lines_and_exits_1(tmp_path: Path) -> None:
    entries = scripted_session()
    (path,) = await write_journal(tmp_path / "journal", entries)
    lines = path.read_bytes().split(b"\n")
    lines[6] = b"\x00\xffgarbage"  # line 7
    path.write_bytes(b"\n".join(lines)[:-25])  # and a torn last line (the disconnect marker)
    (clean,) = await write_journal(
        tmp_path / "clean", [e for i, e in enumerate(entries, 1) if i not in (7, len(entries))]
    )
    encoder = JsonlSink(sys.stdout.buffer)
    rep = Replayer()
    expected = [
        encoder.encode(table, row).decode()
        for item in read_journal([clean])
        for table, row in rep.feed(item)
    ]

    result = kalshi("replay", str(path), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines(keepends=True) == expected
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"{path}:7: invalid JSON: ")
    torn = len(lines[15]) - 25 + 1
    assert errors[1] == f"{path}:16: torn last line ({torn} bytes, no newline)"
    assert errors[2:] == [
        # line 7 was the trade sid's first frame (seq 1): its loss is a gap too
        "replayed 11 frames (14 journal records); rows: gaps 2, orderbook_deltas 4, "
        "orderbook_snapshots 3, trades 1",
        _MALFORMED,
        "frames flagged by the pipeline: invalid 1",
        "1 line(s) not read (damaged, or of a file refused whole)",
        "1 file(s) end torn, read up to the cut: a write the journal disk refused was written"
        " again whole to the gatherer's next file (read there); one cut by a crash was not",
    ]


@pytest.mark.parametrize("writers", ["inline", "process"])
async def test_replay_into_a_database_twice(db_url: str, tmp_path: Path, writers: str) -> None:
    await write_journal(tmp_path / "journal", scripted_session(), compress=True)
    summary = (
        "replayed 12 frames (16 journal records); rows: gaps 1, orderbook_deltas 4, "
        "orderbook_snapshots 3, trades 2"
    )
    every = "gaps 1, orderbook_deltas 4, orderbook_snapshots 3, trades 2"
    for tally in (
        [f"committed (new rows): {every}"],
        ["committed (new rows): none", f"already stored (skipped): {every}"],
    ):
        result = kalshi(
            "replay", str(tmp_path / "journal"), "--db", db_url, "--writers", writers, cwd=tmp_path
        )
        # the malformed frame is located on stderr, the summary on stdout
        assert (result.returncode, result.stderr) == (0, _MALFORMED + "\n")
        assert result.stdout.splitlines() == [
            summary,
            "frames flagged by the pipeline: invalid 1",
            *tally,
        ]
    at = str(BASE_US + 450)
    from_db = kalshi("snapshot", "--ticker", T1, "--json", "--at", at, "--db", db_url, cwd=tmp_path)
    from_journal = kalshi(
        "snapshot", str(tmp_path / "journal"), "--ticker", T1, "--json", "--at", at, cwd=tmp_path
    )
    assert (from_db.returncode, from_journal.returncode) == (0, 0)
    doc = orjson.loads(from_db.stdout)
    assert doc == {
        "ticker": T1,
        "source": "db",
        "as_of": "2026-11-24T22:59:00.001400Z",
        "as_of_us": BASE_US + 400,
        "stale": False,
        "detail": "",
        "best_yes_bid": "0.4200",
        "best_yes_ask": "0.4500",
        "spread": "0.0300",
        "yes": [
            {"price": "0.4200", "size": "3.00", "cumulative": "3.00"},
            {"price": "0.4000", "size": "10.00", "cumulative": "13.00"},
        ],
        "no": [{"price": "0.5500", "size": "7.00", "cumulative": "7.00"}],
    }
    assert orjson.loads(from_journal.stdout) == {**doc, "source": "journal"}
    # without --ticker: the market of the newest delta stored at that time
    picked = kalshi("snapshot", "--json", "--at", at, "--db", db_url, cwd=tmp_path)
    assert picked.stderr == ""
    assert (picked.returncode, orjson.loads(picked.stdout)) == (0, doc)
    table = kalshi("snapshot", "--ticker", T1, "--depth", "1", "--db", db_url, cwd=tmp_path)
    assert table.returncode == 0
    assert "best yes bid 0.4100 · best yes ask - · spread -" in table.stdout
    assert "0.4000" not in table.stdout  # --depth 1: only the best level


async def test_the_writer_process_store_error_is_the_inline_one(
    db_url: str, tmp_path: Path
) -> None:
    """The writer process's store refuses (its spool holds another database's rows): the
    same one line and exit 1 as the inline writers, nothing written."""
    files = await write_journal(tmp_path / "journal", scripted_session())
    nowhere = "postgresql://postgres@127.0.0.1:1/nowhere"
    with trio.fail_after(60):
        lost = await replay_into_db(
            read_journal(files), nowhere, store_config(tmp_path, grace=1.0), writers="process"
        )
    assert sum(lost.left.values()) == 10
    (tmp_path / "cfg.yaml").write_text("spool: {dir: spool, dead_letter_dir: dead-letter}\n")
    said = []
    for writers in ("inline", "process"):
        result = kalshi(
            "replay", str(tmp_path / "journal"), "--config", "cfg.yaml", "--db", db_url,
            "--writers", writers, cwd=tmp_path,
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        said.append(result.stderr)
    assert said[0] == said[1]
    assert "holds 10 rows for database 127.0.0.1:1/nowhere" in said[0], said[0]
    with connect_db(db_url) as db:
        assert sum(db.counts().values()) == 0


async def test_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    await write_journal(tmp_path / "journal", scripted_session())
    journal = str(tmp_path / "journal")
    cases = [
        (("snapshot", journal, "--ticker", "NOPE"), "error: NOPE: not in the journal"),
        (
            ("snapshot", journal, "--ticker", T1, "--at", "2026-11-24T22:59:00Z"),
            f"error: {T1}: no order book recorded at or before 2026-11-24T22:59:00.000000Z",
        ),
        (
            ("snapshot", "--ticker", T1, "--source", "rest", "--config", "rest.yaml"),
            "error: REST unreachable (http://127.0.0.1:9/trade-api/v2): GET "
            f"/markets/{T1}/orderbook: ConnectError: all attempts to connect to 127.0.0.1:9 failed",
        ),
        (
            ("replay", str(tmp_path / "missing.jsonl"), "--format", "jsonl"),
            f"error: {tmp_path / 'missing.jsonl'}: no such file or directory",
        ),
    ]
    (tmp_path / "rest.yaml").write_text("kalshi:\n  rest_url: http://127.0.0.1:9/trade-api/v2\n")
    for args, line in cases:
        result = kalshi(*args, cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n"), args


async def test_serve_from_the_command_line_until_ctrl_c(tmp_path: Path) -> None:
    await write_journal(tmp_path / "journal", scripted_session())
    command = [sys.executable, "-m", "kalshi", "replay", str(tmp_path / "journal"), "--serve", "0"]
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
        )
        assert process.stdout is not None
        banner = b""
        while not banner.endswith(b"\n"):
            banner += await process.stdout.receive_some()
        text = banner.decode()
        assert text.startswith("serving 1 source(s) on ws://127.0.0.1:")
        url = text.split()[-1]
        assert url.endswith("/trade-api/ws/v2")
        async with trio_websocket.open_websocket_url(url) as ws:
            subscribe = {"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}}
            await ws.send_message(orjson.dumps(subscribe).decode())
            got = [orjson.loads(await ws.get_message()) for _ in range(3)]
        assert [f["type"] for f in got] == ["subscribed", "trade", "trade"]
        process.send_signal(signal.SIGINT)
        assert await process.wait() == 0
        rest = b""
        while chunk := await process.stdout.receive_some():
            rest += chunk
        assert rest == b"stopped\n"


async def test_replay_an_s3_prefix(tmp_path: Path, s3_server: S3Server) -> None:
    (path,) = await write_journal(tmp_path / "journal", scripted_session(), compress=True)
    await trio.to_thread.run_sync(s3_server.create_bucket, "replay-cli")
    client = s3_server.client()
    key = f"raw/journal/{path.relative_to(tmp_path / 'journal').as_posix()}"
    await trio.to_thread.run_sync(lambda: client.upload_file(str(path), "replay-cli", key))
    (tmp_path / "s3.yaml").write_text(
        "s3_export:\n"
        "  enabled: true\n"
        f"  endpoint: {s3_server.endpoint}\n"
        f"  access_key: {s3_server.access_key}\n"
        f"  secret_key: {s3_server.secret_key}\n"
        f"  region: {s3_server.region}\n"
    )
    local = kalshi("replay", str(path), "--format", "jsonl", cwd=tmp_path)
    remote = kalshi(
        "replay", "s3://replay-cli/raw/", "--format", "jsonl", "--config", "s3.yaml", cwd=tmp_path
    )
    assert (remote.returncode, remote.stdout, remote.stderr) == (0, local.stdout, local.stderr)
    assert len(local.stdout.splitlines()) == 10


async def test_usage_and_config_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    # A command line or configuration a command cannot run with: one `error:` line, exit 2,
    # nothing started (no embedded PostgreSQL, no .kalshi directory).
    await write_journal(tmp_path / "journal", scripted_session())
    journal = str(tmp_path / "journal")
    cases = [
        (("snapshot", "--depth", "-3"), 'Invalid value "-3" for --depth. Must be > 0.'),
        (
            ("snapshot", "--at", "notatime", "--ticker", "X"),
            "--at: expected an RFC 3339 time (2026-11-24T22:59:00Z), a date (2026-11-24,"
            " midnight UTC) or µs since the epoch, got 'notatime'",
        ),
        (("snapshot", "--source", "rest"), "--ticker is needed with --source rest"),
        (("snapshot", journal), "--ticker is needed with --source journal"),
        (("snapshot", "--source", "journal"), "--source journal needs journal FILES"),
        (
            ("snapshot", journal, "--source", "db"),
            "FILES are only read with --source journal (not db)",
        ),
        (
            ("snapshot", "--source", "rest", "--ticker", "X", "--at", "1"),
            "--at needs --source db or journal (REST has only the current book)",
        ),
        (
            ("replay", journal, "--format", "csv"),
            "--format csv writes one table: give exactly one --table",
        ),
        # Outside tester F6: milliseconds were read as µs (1970) and --from let all through.
        (
            ("snapshot", journal, "--ticker", "X", "--at", "1785901700692"),
            "--at: an integer time is µs since the epoch (from 946684800000000, 2000-01-01,"
            " to 4102444800000000, 2100-01-01), got 1785901700692 (ms, s or ns?)",
        ),
        (
            ("replay", journal, "--format", "jsonl", "--from", "1785901700692"),
            "--from: an integer time is µs since the epoch (from 946684800000000, 2000-01-01,"
            " to 4102444800000000, 2100-01-01), got 1785901700692 (ms, s or ns?)",
        ),
        (
            ("replay", journal, "--format", "jsonl", "--to", "1785901700692000000"),
            "--to: an integer time is µs since the epoch (from 946684800000000, 2000-01-01,"
            " to 4102444800000000, 2100-01-01), got 1785901700692000000 (ms, s or ns?)",
        ),
        (
            ("replay", journal, "--from", "yesterday"),
            "--from: expected an RFC 3339 time (2026-11-24T22:59:00Z), a date (2026-11-24,"
            " midnight UTC) or µs since the epoch, got 'yesterday'",
        ),
        (
            (
                "replay",
                journal,
                "--format",
                "jsonl",
                "--from",
                "2027-01-01T00:00:00Z",
                "--to",
                "2026-01-01T00:00:00Z",
            ),
            "--from (2027-01-01T00:00:00Z) is after --to (2026-01-01T00:00:00Z):"
            " the range holds nothing",
        ),
        (
            ("replay", journal, "--format", "jsonl", "--db", "postgresql://x/y"),
            "--db and --format exclude each other: a replay goes to one place",
        ),
        (("replay", journal, "--speed", "0"), 'Invalid value "0.0" for --speed. Must be > 0.'),
        (
            ("replay", journal, "--table", "nope"),
            "--table: unknown table 'nope' (one of trades, orderbook_deltas,"
            " orderbook_snapshots, tickers, market_lifecycle, markets, gaps)",
        ),
        (("gather",), "no private key configured (kalshi.api_secret / KALSHI_API_SECRET)"),
        # every numeric option is checked by cyclopts before anything starts (F5, F6)
        (("sim", "--markets", "-5"), 'Invalid value "-5" for --markets. Must be >= 0.'),
        (
            ("sim", "--markets", "250001"),
            'Invalid value "250001" for --markets. Must be <= 250000.',
        ),
        (("sim", "--rate", "-1"), 'Invalid value "-1.0" for --rate. Must be >= 0.'),
        (("sim", "--rest-latency", "-1"), 'Invalid value "-1.0" for --rest-latency. Must be >= 0.'),
        (
            ("sim", "--active", "5000", "--markets", "10"),
            "--active (5000) must be at most --markets (10)",
        ),
        (
            ("demo", "--duration", "0", "--no-tui", "--markets", "-3"),
            'Invalid value "-3" for --markets. Must be >= 0.',
        ),
        (
            ("demo", "--active", "11", "--markets", "10"),
            "--active (11) must be at most --markets (10)",
        ),
        (("gather", "--duration", "-5"), 'Invalid value "-5.0" for --duration. Must be > 0.'),
        (("gather", "--duration", "0"), 'Invalid value "0.0" for --duration. Must be > 0.'),
        (("status", "--refresh", "0"), 'Invalid value "0.0" for --refresh. Must be > 0.'),
        (
            ("status", "notaurl", "--once"),
            "URL: expected an http:// or https:// address, got 'notaurl'",
        ),
        (
            ("status", "--metrics-url", "127.0.0.1:9090", "--once"),
            "--metrics-url: expected an http:// or https:// address, got '127.0.0.1:9090'",
        ),
        (
            ("nosuch",),
            'Unknown command "nosuch". Available commands: dedup, export, config, db, demo,'
            " gather, replay, sim, ...",
        ),
        (("gather", "--bogus"), "Unknown option: --bogus."),
        (
            ("replay", journal, "--format", "xml"),
            'Invalid value "xml" for --format. Choose from: "jsonl", "csv".',
        ),
    ]
    for args, line in cases:
        result = kalshi(*args, cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", f"error: {line}\n"), (
            args
        )
    assert not (tmp_path / ".kalshi").exists()


async def test_snapshot_from_rest_needs_no_private_key(tmp_path: Path) -> None:
    # Market data is public (kalshi-api.md, "REST auth"): a config with a placeholder key
    # and no key file still reads the book, unsigned.
    async with open_sim_exchange(markets=3, active=3, rate=0.0, seed=5, port=0) as sim:
        sim.engine.pause()
        ticker = sim.engine.active_tickers[0]
        (tmp_path / "rest.yaml").write_text(
            f"kalshi:\n  rest_url: {sim.rest_url}\n  api_key: your-api-key-id\n"
            f"  api_secret: {tmp_path / 'missing.pem'}\n"
        )
        with trio.fail_after(60):
            result = await trio.run_process(
                [sys.executable, "-m", "kalshi", "snapshot", "--source", "rest", "--ticker",
                 ticker, "--json", "--config", "rest.yaml"],
                capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path,
            )  # fmt: skip
        truth = sim.truth.book(ticker)
    assert (result.returncode, result.stderr) == (0, b"")
    doc = orjson.loads(result.stdout)
    assert (doc["ticker"], doc["source"], doc["stale"]) == (ticker, "rest", False)
    best = truth.best_yes_bid()
    assert best is not None  # the simulator's markets start with two-sided books
    assert doc["best_yes_bid"] == f"{best[0] / 100_000:.4f}"


async def test_a_list_option_takes_several_values_after_it(tmp_path: Path) -> None:
    # Outside tester F7: `--channel trade ticker` gave "error: Unused Tokens: ['ticker']."
    (path,) = await write_journal(tmp_path / "journal", scripted_session())
    rep = Replayer(ReplayFilter(channels=frozenset({"trade", "orderbook_delta"})))
    encoder = JsonlSink(sys.stdout.buffer)
    expected = "".join(
        encoder.encode(table, row).decode()
        for item in read_journal([path])
        for table, row in rep.feed(item)
    )
    assert {line.split('"', 2)[1] for line in expected.splitlines()} == {"table"}
    journal = str(tmp_path / "journal")
    for channels in (
        ("--channel", "trade", "orderbook_delta"),
        ("--channel", "trade", "--channel", "orderbook_delta"),
    ):
        result = kalshi("replay", journal, "--format", "jsonl", *channels, cwd=tmp_path)
        assert (result.returncode, result.stdout) == (0, expected), result.stderr
    # files after the list, ended by --, are files again
    ended = kalshi("replay", "--format", "jsonl", *channels, "--", journal, cwd=tmp_path)
    assert (ended.returncode, ended.stdout) == (0, expected), ended.stderr
    # without --, a source after the list would be a value: refused, nothing replayed
    for option in ("--table", "--ticker", "--channel"):
        result = kalshi(
            "replay", journal, "--format", "jsonl", option, "trades", journal, cwd=tmp_path
        )
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"error: {option}: {journal!r} is a source, not a value: give FILES before the"
            " options, or end the list with --\n",
        )


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (any of its threads), from Linux's /proc."""
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
async def test_a_stopped_process_replay_ends_both_processes_and_counts_what_it_made(
    db_url: str, tmp_path: Path, how: str
) -> None:
    """``--writers process --speed 1`` over 12 frames, an hour of recorded silence, then 10
    more: stopped while it waits (Ctrl-C reaches the whole process group, SIGTERM only this
    process), both processes end; the rows made until then (the frame it was waiting to
    send included) are committed and counted, the rest is not replayed, exit 1."""
    frames = [subscribed(1, "orderbook_delta"), snapshot(1, 1, T1, yes=[("0.4000", "10.00")])]
    for i in range(20):
        size = "1.00" if i % 2 == 0 else "-1.00"
        frames.append(delta(1, i + 2, T1, "0.4000", size, ts_ms=1_795_561_141_000 + i))
    hour = 3_600_000_000
    entries = [
        ("in", OB_CONN, k, BASE_US + 10 * k + (hour if k > 12 else 0), raw)
        for k, raw in enumerate(frames, 1)
    ]
    await write_journal(tmp_path / "journal", entries)
    command = [sys.executable, "-m", "kalshi", "replay", str(tmp_path / "journal")]
    command += ["--db", db_url, "--writers", "process", "--speed", "1"]
    with trio.fail_after(90):
        process = await trio.lowlevel.open_process(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            start_new_session=True,  # its own process group, as a shell runs it
        )
        # waiting out the hour: the first 12 frames' rows are acknowledged by the database
        while True:
            with connect_db(db_url) as db:
                if db.counts()["orderbook_deltas"] == 10:
                    break
            await trio.sleep(0.05)  # polling the database's acknowledgement, not a delay
        # its children: the writer process, and multiprocessing's resource tracker
        (writer,) = [pid for pid in _children(process.pid) if b"spawn_main" in _cmdline(pid)]
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        assert process.stdout is not None and process.stderr is not None
        out, err = b"", b""
        while chunk := await process.stdout.receive_some():
            out += chunk
        while chunk := await process.stderr.receive_some():
            err += chunk
        assert await process.wait() == 1
    assert not _alive(writer)  # ended and reaped
    assert out.decode().splitlines() == [
        "replayed 13 frames (13 journal records); rows: orderbook_deltas 11, orderbook_snapshots 1",
        "committed (new rows): orderbook_deltas 11, orderbook_snapshots 1",
    ]
    assert err.decode().splitlines() == [
        "stopped by a signal after 13 journal records: the rows made until then are counted"
        " above; the rest of the journal was not replayed"
    ]
    with connect_db(db_url) as db:
        assert (db.counts()["orderbook_deltas"], db.counts()["orderbook_snapshots"]) == (11, 1)
    assert sorted((tmp_path / ".kalshi").rglob("*.batch")) == []
