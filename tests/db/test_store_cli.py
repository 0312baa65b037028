"""`kalshi db ...` as a user runs it: real processes, an embedded server in a scratch dir."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalshi.store.migrate import load_migrations


@pytest.fixture
def config_file() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="kalshi-cli-"))
    root.chmod(0o755)  # the server may run as an unprivileged user
    config = root / "gatherer.yaml"
    config.write_text(f"timescaledb:\n  data_dir: {root / 'pg'}\n")
    try:
        yield config
    finally:
        kalshi("db", "down", "--config", str(config))
        shutil.rmtree(root, ignore_errors=True)


def kalshi(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_up_status_reset_down(config_file: Path) -> None:
    cfg = ["--config", str(config_file)]
    stopped = kalshi("db", "status", *cfg)
    assert (stopped.returncode, stopped.stdout.splitlines()[0]) == (
        0,
        f"server: embedded, stopped ({config_file.parent / 'pg'}); run `kalshi db up`",
    )

    up = kalshi("db", "up", *cfg)
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    names = [m.name for m in load_migrations()]
    assert names[:5] == [
        "001_storage_mode.sql",
        "002_tables.sql",
        "003_time_series.sql",
        "004_dedup.sql",
        "005_watermark.sql",
    ]
    assert lines[: len(names) + 1] == [
        *(f"applied {name}" for name in names),
        "storage mode: postgresql",
    ]
    url = lines[len(names) + 1]
    assert url.startswith("postgresql://postgres@127.0.0.1:") and url.endswith("/kalshi")

    status = kalshi("db", "status", *cfg)
    assert status.returncode == 0, status.stderr
    assert f"url: {url}" in status.stdout.splitlines()
    assert "storage mode: postgresql" in status.stdout.splitlines()
    assert f"migrations: {len(names)} applied, 0 pending" in status.stdout.splitlines()
    assert [line.split() for line in status.stdout.splitlines() if line.endswith(" rows")] == [
        [table, "0", "rows"]
        for table in (
            "trades",
            "orderbook_deltas",
            "orderbook_snapshots",
            "tickers",
            "market_lifecycle",
            "markets",
            "gaps",
        )
    ]

    again = kalshi("db", "migrate", *cfg)
    assert again.stdout.splitlines() == ["schema up to date", "storage mode: postgresql"]

    refused = kalshi("db", "reset", *cfg, stdin="n\n")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == ["error: reset cancelled"]

    reset = kalshi("db", "reset", "--yes", *cfg)
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.splitlines() == [
        f"reset {url}: applied {len(names)} migrations, storage mode: postgresql"
    ]

    down = kalshi("db", "down", *cfg)
    assert down.stdout.splitlines() == ["embedded PostgreSQL stopped"]
    # Up again: the port chosen at first start is kept, so the URL (and a gatherer's
    # spool, which names it) stays valid.
    again = kalshi("db", "up", *cfg)
    assert again.stdout.splitlines() == ["storage mode: postgresql", url]


def test_unreachable_database_is_one_clear_line() -> None:
    result = kalshi("db", "migrate", "--url", "postgresql://postgres@127.0.0.1:1/kalshi")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: connection failed: ")
