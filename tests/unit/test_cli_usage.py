"""The command line as the README promises it (outside tester pbreak8 F4, F5, F7): an unknown
option is one ``error:`` line and exit 2 for every command, a name outside a closed set is
refused like one, and a reader that closed the pipe ends a command quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cyclopts import App

from kalshi.cli import app
from kalshi.cli.app import parse_time

GOLD = Path(__file__).parent.parent / "data" / "kalshi-gold15m" / "events"
CAPTURE = GOLD / "KXGOLD15M-26AUG050000-00" / "2026-08-05.ndjson.gz"


def _commands(node: App, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every command that runs (``db up``, ``replay``...), found in the app itself: a command
    added later is covered without a change here."""
    found: list[tuple[str, ...]] = []
    for name in node:
        if name.startswith("-"):  # --help, --version
            continue
        sub = node[name]
        if sub.default_command is not None:
            found.append((*path, name))
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(app, ())


def kalshi(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_the_command_list_is_complete() -> None:
    assert COMMANDS == [
        ("dedup",),
        ("export",),
        ("config", "check"),
        ("db", "up"),
        ("db", "down"),
        ("db", "status"),
        ("db", "migrate"),
        ("db", "reset"),
        ("demo",),
        ("gather",),
        ("replay",),
        ("sim",),
        ("snapshot",),
        ("status",),
    ]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_option_is_one_line_and_exit_2(command: tuple[str, ...], tmp_path: Path) -> None:
    # F4: `replay --nosuch` read it as a file (exit 1), `snapshot --nosuch` complained of
    # --ticker; nothing may start (no embedded PostgreSQL, no .kalshi directory).
    result = kalshi(*command, "--zzqx", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: Unknown option: --zzqx.\n",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [("replay",), ("snapshot", "--ticker", "X")], ids=" ".join)
def test_a_file_named_like_an_option_is_read_after_double_dash_or_as_dot_slash(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    after = kalshi(*command, "-", "--", "-x", cwd=tmp_path)
    dotted = kalshi(*command, "./-x", cwd=tmp_path)
    before = kalshi(*command, "-x", "--", "-y", cwd=tmp_path)
    assert [(r.returncode, r.stdout, r.stderr) for r in (after, dotted, before)] == [
        (1, "", "error: -x: no such file or directory\n"),
        (1, "", "error: -x: no such file or directory\n"),  # the path as pathlib spells it
        (2, "", "error: Unknown option: -x.\n"),
    ]


def test_an_unknown_channel_is_refused_like_an_unknown_table(tmp_path: Path) -> None:
    # F5: `--channel trades` (for trade) printed `rows: none` and exit 0.
    channel = kalshi(
        "replay", str(CAPTURE), "--format", "jsonl", "--channel", "trades", cwd=tmp_path
    )
    table = kalshi("replay", str(CAPTURE), "--format", "jsonl", "--table", "trade", cwd=tmp_path)
    assert [(r.returncode, r.stdout, r.stderr) for r in (channel, table)] == [
        (
            2,
            "",
            "error: --channel: unknown channel 'trades' (one of orderbook_delta, trade, ticker,"
            " market_lifecycle_v2, multivariate_market_lifecycle)\n",
        ),
        (
            2,
            "",
            "error: --table: unknown table 'trade' (one of trades, orderbook_deltas,"
            " orderbook_snapshots, tickers, market_lifecycle, markets, gaps)\n",
        ),
    ]
    # the window's 1 033 trades (expected.json, the data set's own count)
    good = kalshi("replay", str(CAPTURE), "--format", "jsonl", "--channel", "trade", cwd=tmp_path)
    assert (good.returncode, good.stdout.count('{"table":"trades"')) == (0, 1033), good.stderr


@pytest.mark.parametrize(
    "output", [("--format", "jsonl"), ("--format", "csv", "--table", "orderbook_deltas")]
)
def test_a_reader_that_closed_the_pipe_ends_replay_quietly(output: tuple[str, ...]) -> None:
    # F7: `kalshi replay J --format jsonl | head -1` printed `error: Broken pipe`. The
    # capture's rows are far more than a pipe holds (64 KiB), so the replay is still writing
    # when the reader goes: no message, exit 1 (Python's docs, "Note on SIGPIPE").
    with subprocess.Popen(
        [sys.executable, "-m", "kalshi", "replay", str(CAPTURE), *output],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read()
        code = process.wait(timeout=120)
    assert first.startswith(
        b'{"table":"orderbook_snapshots","snapshot_ts":1785901540025000,'
        if output[1] == "jsonl"
        else b"exchange_ts,received_at,gatherer_id,ticker,side,price,size_delta,conn_id,"
        b"frame_no,sid,seq\n"
    )
    assert (code, stderr) == (1, b"")


# Every time option of the command line (outside tester pbreak9 N7: `export --until` took
# RFC 3339 only, `sim --start` a date too, replay's and snapshot's µs too): one parser.
TIME_OPTIONS = [
    ("replay", str(CAPTURE), "--format", "jsonl", "--from"),
    ("replay", str(CAPTURE), "--format", "jsonl", "--to"),
    ("snapshot", str(CAPTURE), "--ticker", "X", "--at"),
    ("export", "--until"),
    ("sim", "--start"),
]


@pytest.mark.parametrize("command", TIME_OPTIONS, ids=lambda c: f"{c[0]} {c[-1]}")
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            "yesterday",
            "expected an RFC 3339 time (2026-11-24T22:59:00Z), a date (2026-11-24, midnight"
            " UTC) or µs since the epoch, got 'yesterday'",
        ),
        (
            "2026-02-30",
            "expected an RFC 3339 time (2026-11-24T22:59:00Z), a date (2026-11-24, midnight"
            " UTC) or µs since the epoch, got '2026-02-30'",
        ),
        (
            "1785901700692",
            "an integer time is µs since the epoch (from 946684800000000, 2000-01-01, to"
            " 4102444800000000, 2100-01-01), got 1785901700692 (ms, s or ns?)",
        ),
    ],
    ids=["word", "no-such-day", "ms"],
)
def test_every_time_option_refuses_the_same_way(
    command: tuple[str, ...], value: str, reason: str, tmp_path: Path
) -> None:
    result = kalshi(*command, value, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"error: {command[-1]}: {reason}\n",
    )
    assert not (tmp_path / ".kalshi").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("2026-08-05T00:00:00Z", 1_785_888_000_000_000),
        ("2026-08-05", 1_785_888_000_000_000),
        ("1785888000000000", 1_785_888_000_000_000),
        ("2026-08-05T01:02:03.000004+01:00", 1_785_888_000_000_000 + 3_723_000_004 - 3_600_000_000),
        ("946684800000000", 946_684_800_000_000),
        ("4102444799999999", 4_102_444_799_999_999),
    ],
)
def test_the_time_forms_every_option_takes(text: str, us: int) -> None:
    assert parse_time(text, "--at") == us


def _long_running(name: str, tmp_path: Path, db_url: str, other_db_url: str) -> list[str]:
    """The arguments of a command that prints from inside its Trio event loop."""
    if name in ("dedup --once", "export"):
        settings = {
            "gatherers": [{"id": "g-1", "timescaledb": other_db_url}],
            "production": {"url": db_url},
            "metrics": {"enabled": False},
            "http": {"port": 0},
            "logging": {"level": "error"},
            "s3_export": {"enabled": True, "local_dir": str(tmp_path / "out"), "window": "1h"},
        }
        (tmp_path / "dd.yaml").write_text(json.dumps(settings))  # YAML reads JSON
        return [*name.split(), "--config", "dd.yaml", *(["--all-windows"] * (name == "export"))]
    if name == "sim":  # --port 0: a free port, let go when the process ends
        return ["sim", "--port", "0", "--markets", "10", "--key-file", "key.pem"]
    return ["replay", str(CAPTURE), "--serve", "0"]


@pytest.mark.parametrize("name", ["dedup --once", "export", "sim", "replay --serve"])
def test_a_reader_gone_ends_a_command_printing_in_its_event_loop_quietly(
    name: str, tmp_path: Path, db_url: str, other_db_url: str
) -> None:
    # pbreak9 N2: `kalshi sim | head -1` (and dedup --once, export, replay --serve piped to
    # `true`) printed a 60-line traceback ending `SystemExit: 1`: rich's console turns the
    # BrokenPipeError into SystemExit(1), which Trio hands back inside an exception group.
    # The reader here is gone before the command prints (`| true`), so its first line, in
    # its event loop, is the one refused: no message, exit 1, whatever the timing.
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kalshi", *_long_running(name, tmp_path, db_url, other_db_url)],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, b"")


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (
            ("--format", "jsonl", "--writers", "process"),
            "--format and --writers do not go together: --writers chooses a database replay's"
            " writers",
        ),
        (
            ("--format", "jsonl", "--writers", "inline"),
            "--format and --writers do not go together: --writers chooses a database replay's"
            " writers",
        ),
        (
            ("--serve", "0", "--writers", "process"),
            "--serve and --writers do not go together: --writers chooses a database replay's"
            " writers",
        ),
        (
            ("--serve", "0", "--table", "trades"),
            "--serve and --table do not go together: a re-served recording is frames, not rows",
        ),
        (
            ("--serve", "0", "--continuity"),
            "--serve and --continuity do not go together: --continuity reports a replay, not a"
            " re-served one",
        ),
    ],
)
def test_replay_options_of_another_output_are_refused(
    options: tuple[str, ...], line: str, tmp_path: Path
) -> None:
    # pbreak9 N6: they were ignored (a jsonl replay "in a second process", a served
    # recording "of one table").
    result = kalshi("replay", str(CAPTURE), *options, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"error: {line}\n")


def test_a_ticker_never_seen_is_a_warning(tmp_path: Path) -> None:
    # pbreak9 N6: `--ticker KXNOSUCH` (a typo) said only `rows: none`, exit 0.
    result = kalshi(
        "replay", str(CAPTURE), "--format", "jsonl", "--table", "trades",
        "--ticker", "KXNOSUCH", "KXGOLD15M-26AUG050000-00", "KXALSONOT", cwd=tmp_path,
    )  # fmt: skip
    assert (result.returncode, result.stdout.count('{"table":"trades"')) == (0, 1033)
    assert result.stderr.splitlines()[:2] == [
        "warning: --ticker: never seen in the input: KXALSONOT, KXNOSUCH",
        "replayed 38,127 frames (38,128 journal records); rows: trades 1,033",
    ]
