"""`kalshi dedup` as a process: killed with SIGKILL mid-merge and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import yaml
from dedup_support import MISSES, assert_production_is_truth, recordings, write_all

import kalshi
from kalshi.store import EmbeddedPostgres, connect_db
from kalshi.testing.recording import make_truth

# `dedup --once`'s summary when a pass merged nothing: every table, every time (outside
# tester, item 8: gaps and orderbook_deltas were left out on a repeat run).
ZERO_ROWS = [
    "gaps                          0 merged          0 duplicates",
    "market_lifecycle              0 merged          0 duplicates",
    "markets                       0 merged          0 duplicates",
    "orderbook_deltas              0 merged          0 duplicates",
    "orderbook_snapshots           0 merged          0 duplicates",
    "tickers                       0 merged          0 duplicates",
    "trades                        0 merged          0 duplicates",
]


def _config(
    path: Path, production: str, urls: dict[str, str], export_to: Path | None = None
) -> Path:
    """A dedup config at ``path``; with ``export_to``, the export writes hour windows there
    (a local directory, no S3)."""
    settings: dict[str, Any] = {
        "gatherers": [{"id": g, "timescaledb": u} for g, u in urls.items()],
        "production": {"url": production},
        "sync": {"poll_interval": "50ms", "batch_size": 5},
        "metrics": {"enabled": False},
        "http": {"port": 0},
        "logging": {"level": "warning"},
    }
    if export_to is not None:
        settings["s3_export"] = {"enabled": True, "local_dir": str(export_to), "window": "1h"}
    path.write_text(yaml.safe_dump(settings))
    return path


async def _kalshi(config: Path, *args: str) -> str:
    """``kalshi ARGS --config CONFIG`` as a process; asserts it exits 0, returns its stdout."""
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, "-m", "kalshi", *args, "--config", str(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def _dedup(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kalshi", "dedup", "--config", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def test_kill_9_mid_merge_then_restart_leaves_no_duplicates_and_no_holes(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # 500 ms steps: the order books take several merge transactions (5 minutes each).
    truth = make_truth(21, events=1500, step_us=500_000)
    urls = await write_all(make_db, recordings(truth, MISSES), tmp_path)
    production = make_db()
    config = _config(tmp_path / "dedup.yaml", production, urls)
    total = len(truth.deltas())

    with _dedup(config) as proc:  # leaving it closes the stdout pipe
        try:
            with connect_db(production) as db:
                deadline = time.monotonic() + 120
                while not db.query("SELECT 1 FROM dedup_books LIMIT 1"):
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
                    assert time.monotonic() < deadline
                    await trio.sleep(0.005)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                merged = db.count("orderbook_deltas")
            assert 0 < merged < total  # killed between the first and the last transaction
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    await _kalshi(config, "dedup", "--once")
    assert_production_is_truth(production, truth, MISSES)


async def test_once_merges_and_exports_closed_windows_and_export_force_redoes_them(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(22, events=200)
    urls = await write_all(make_db, recordings(truth, MISSES, (700, 700, 700)), tmp_path)
    production = make_db()
    out = tmp_path / "out"
    config = _config(tmp_path / "dedup.yaml", production, urls, export_to=out)

    printed = await _kalshi(config, "dedup", "--once")
    assert "source switches:" in printed
    # The recording is long past, so its hour is closed: every table's window is exported.
    assert "exported 5 windows" in printed
    assert_production_is_truth(production, truth, MISSES)
    printed = await _kalshi(config, "export")
    assert "export: no closed window to export" in printed
    printed = await _kalshi(config, "export", "--force")
    assert "exported 5 windows" in printed
    with connect_db(production) as db:
        counts = {t: db.count(t) for t in ("trades", "tickers", "gaps", "orderbook_snapshots")}
        deltas = db.count("orderbook_deltas")
        levels = db.query(
            "SELECT sum(greatest(1, jsonb_array_length(yes_bids) + jsonb_array_length(no_bids)))"
            " FROM orderbook_snapshots WHERE source = 'ws'"
        )[0][0]
    manifests = {
        p.parent.parent.parent.name: json.loads(p.read_text())
        for p in out.rglob("_manifest.json")
        if p.parent.name != "markets"  # the markets table is one file, not windows
    }
    assert {t: m["rows"] for t, m in manifests.items() if t != "orderbook_deltas"} == counts
    markets = json.loads(next(out.rglob("markets/_manifest.json")).read_text())
    with connect_db(production) as db:
        assert markets["rows"] == db.count("markets")  # none in this recording
    # One window: every market's stream starts with a snapshot, so no start books.
    assert manifests["orderbook_deltas"]["rows"] == deltas + levels
    again = await _kalshi(config, "dedup", "--once")
    assert again.splitlines()[:8] == [*ZERO_ROWS, "source switches: 0, holes: 0"]


def test_a_gatherer_writing_to_production_itself_is_refused_saying_what_to_do(
    tmp_path: Path,
) -> None:
    # The seed guide's local config used one database as gatherer and production (item 3).
    url = "postgresql://postgres@127.0.0.1:1/kalshi"  # refused before any connection
    config = _config(tmp_path / "dedup.yaml", url, {"local-1": url})
    done = subprocess.run(
        [sys.executable, "-m", "kalshi", "dedup", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"config error: {config}: gatherers: local-1 writes to the production database itself"
        " (its timescaledb is production.url); dedup copies each gatherer's database into"
        " production, so they must differ: point production.url at another database, e.g."
        " run CREATE DATABASE kalshi_production on the same server and use its URL"
        " (docs/configuration.md, Deduplicator)"
    ]


def test_a_second_deduplicator_on_one_production_database_is_refused(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # Issue 18 item 7: two deduplicators on one production database made inconsistent books.
    from kalshi.dedup.production import Production

    production = make_db()
    config = _config(tmp_path / "dedup.yaml", production, {"g1": make_db()})
    first = Production(production, exclusive=True)
    try:
        with _dedup(config, "--once") as proc:
            out, _ = proc.communicate(timeout=60)
        lines = out.decode().splitlines()
        assert proc.returncode == 1
        assert len(lines) == 1, lines
        assert lines[0].startswith(
            "error: production database is already merged by another deduplicator (backend pid "
        )
        assert lines[0].endswith("; run one deduplicator per production database")
    finally:
        first.close()
    with _dedup(config, "--once") as proc:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()


async def test_once_after_the_gatherers_stopped_says_what_waits_and_all_windows_exports_it(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    """What `just demo` then `just run-dedup --once` meets: stopped gatherers whose ingest
    watermark stays at their last receipt, so their newest hour never closes by itself."""
    truth = make_truth(23, events=200)
    urls = await write_all(make_db, recordings(truth, MISSES, (700, 700, 700)), tmp_path)
    for gid, url in urls.items():
        with connect_db(url) as db:  # what a gatherer leaves when it stops
            last = db.query("SELECT max(received_at) FROM orderbook_deltas")[0][0]
            db.execute(
                "INSERT INTO ingest_watermark VALUES (%s, %s, %s)", (gid, last + 1, last + 1)
            )
    production = make_db()
    out = tmp_path / "out"
    config = _config(tmp_path / "dedup.yaml", production, urls, export_to=out)

    printed = await _kalshi(config, "dedup", "--once")
    held = [line for line in printed.splitlines() if line.startswith("export:")]
    assert held[-2:] == [
        "export: if the gatherers have stopped, --all-windows exports those windows now",
        "export: no closed window to export",
    ]
    assert sorted(line.split()[1] for line in held[:-2]) == [
        "gaps",
        "orderbook_deltas",
        "orderbook_snapshots",
        "tickers",
        "trades",
    ]
    assert all(
        "its window closes when every live gatherer has merged past" in line for line in held[:-2]
    )
    # no window is exported; the markets table (current state, not windowed) is
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "raw/markets/_manifest.json",
        "raw/markets/part-00000.parquet",
    ]
    # the same hour asked for with --until a second before its end: every table says so
    printed = await _kalshi(config, "export", "--until", "2026-01-01T00:59:59Z")
    assert printed.splitlines() == [
        f"export: {table} held back from 2026-01-01T00:00:00Z: its window ends at"
        " 2026-01-01T01:00:00Z, after --until"
        for table in ("trades", "orderbook_deltas", "orderbook_snapshots", "tickers", "gaps")
    ] + [
        # exported by the --once before and unchanged since: not rewritten (tester F4)
        "export: markets unchanged since their last export: not written again",
        "export: no closed window to export",
    ]
    printed = await _kalshi(config, "dedup", "--once", "--all-windows")
    assert printed.splitlines()[-1].startswith("exported 5 windows, ")
    with connect_db(production) as db:
        counts = {t: db.count(t) for t in ("trades", "tickers", "gaps", "orderbook_snapshots")}
    manifests = {
        p.parent.parent.parent.name: json.loads(p.read_text())
        for p in out.rglob("_manifest.json")
        if p.parent.name != "markets"  # the markets table is one file, not windows
    }
    assert {t: m["rows"] for t, m in manifests.items() if t != "orderbook_deltas"} == counts
    printed = await _kalshi(config, "export", "--all-windows")
    assert printed.splitlines() == [
        "export: markets unchanged since their last export: not written again",
        "export: no closed window to export",
    ]
    # trades that reached g0's database late (a backfill over REST), one of that hour and
    # one of the hour before, which had no row (never exported, behind the export): the
    # next `dedup --once` merges them and writes both windows, no --force
    with connect_db(urls["g0"]) as db:
        (last,) = db.query("SELECT complete_before FROM ingest_watermark")[0]
        for trade_id, at in (("late-1", last - 100_000), ("late-2", last - 10_000_000)):
            db.execute(
                "INSERT INTO trades (exchange_ts, received_at, gatherer_id, ticker, trade_id,"
                " price, size, taker_side, is_block_trade, source, conn_id, frame_no) VALUES"
                " (%s, %s, 'g0', 'KXTEST-00', %s, 50, 1, true, false, 'rest', 0, 0)",
                (at, last + 1, trade_id),
            )
        db.execute("UPDATE ingest_watermark SET complete_before = %s", (last + 2,))
    printed = await _kalshi(config, "dedup", "--once")
    assert "export: 2 windows behind the export gained rows since; writing them again" in printed
    assert printed.splitlines()[-1].startswith("exported 2 windows, ")
    trades = {
        p.parent.name: json.loads(p.read_text())["rows"]
        for p in out.glob("raw/trades/**/_manifest.json")
    }
    assert trades == {"hour=23": 1, "hour=00": counts["trades"] + 1}


def test_once_with_an_unreachable_gatherer_exits_1_naming_it(
    make_db: Callable[..., str], pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    # Outside tester (item 11): `dedup --once` printed "skipped (unreachable): gl" and
    # exited 0 with its only gatherer down.
    production = make_db()
    missing = pg_server.url_for(f"dedup_missing_{os.getpid()}")  # never created
    config = _config(tmp_path / "dedup.yaml", production, {"gl": missing})
    with _dedup(config, "--once") as proc:
        out, _ = proc.communicate(timeout=60)
    lines = out.decode().splitlines()
    assert proc.returncode == 1, lines
    assert lines[-1].startswith("error: gatherer gl unreachable, not merged: "), lines
    assert f'database "dedup_missing_{os.getpid()}" does not exist' in lines[-1]
    assert [line for line in lines if "error:" in line] == [lines[-1]]
    assert lines[1:-1] == [*ZERO_ROWS, "source switches: 0, holes: 0"]
    assert len(lines) == 10 and "WARNING kalshi.dedup: gatherer gl skipped: " in lines[0]


def test_unreachable_production_is_named_and_its_password_hidden(tmp_path: Path) -> None:
    # Outside tester (item 11): "error: connection failed: ..." did not say which database.
    config = _config(
        tmp_path / "dedup.yaml",
        "postgresql://u:secret@127.0.0.1:1/prod",
        {"g1": "postgresql://u:pw@127.0.0.1:1/g1"},
    )
    line = (
        "error: production database postgresql://u:***@127.0.0.1:1/prod: connection failed:"
        ' connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
    )
    for args in (("dedup", "--once"), ("export", "--local-dir", str(tmp_path / "out"))):
        done = subprocess.run(
            [sys.executable, "-m", "kalshi", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout, done.stderr) == (1, "", line), args


def test_first_start_logs_each_production_migration_once(
    make_db: Callable[..., str], empty_db_url: str, tmp_path: Path
) -> None:
    # Outside tester F10a: each migration was logged twice, by kalshi.store and kalshi.cli.
    config = _config(tmp_path / "dedup.yaml", empty_db_url, {"g1": make_db()})
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "logging": {"level": "info"}}))
    with _dedup(config, "--once") as proc:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    applied = [line.split(" ", 3)[3] for line in out.decode().splitlines() if " applied " in line]
    sql = sorted((Path(kalshi.__file__).parent / "sql").glob("*.sql"))
    assert applied == [f"kalshi.store: applied migration {path.name}" for path in sql]
