"""Every long-running command binds its ports first (``kalshi.cli.app.ports_first``): a
taken port is one error line and exit 1 before anything is written, as ``kalshi gather``
(tests/gather/test_gather_cli.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from kalshi.store import connect_db


@contextmanager
def _taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield squatter.getsockname()[1]


def _kalshi(*args: str, cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_sim_a_taken_port_fails_before_the_key_and_truth_files_are_written(
    tmp_path: Path,
) -> None:
    # The key file was written and the truth file created before the simulator bound.
    key, truth = tmp_path / "sim" / "key.pem", tmp_path / "truth" / "truth.jsonl"
    with _taken_port() as port:
        done = _kalshi(
            "sim", "--port", str(port), "--key-file", str(key), "--truth", str(truth),
            cwd=tmp_path,
        )  # fmt: skip
    assert done == (
        1,
        "",
        f"error: simulator: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_replay_serve_a_taken_port_names_the_server(tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    capture.write_text('{"type":"subscribed","id":1,"msg":{"channel":"trade","sid":1}}\n')
    with _taken_port() as port:
        done = _kalshi("replay", str(capture), "--serve", str(port), cwd=tmp_path)
    assert done == (
        1,
        "",
        f"error: replay --serve: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )


def test_dedup_a_taken_port_fails_before_production_is_migrated(
    db_url: str, empty_db_url: str, tmp_path: Path
) -> None:
    # serve_dedup bound /health and /metrics after production had been migrated.
    with _taken_port() as port:
        config = tmp_path / "dedup.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "gatherers": [{"id": "g1", "timescaledb": db_url}],
                    "production": {"url": empty_db_url},
                    "metrics": {"enabled": True, "port": port},
                    "http": {"port": 0},
                    "logging": {"level": "warning"},
                }
            )
        )
        done = _kalshi("dedup", "--config", str(config), cwd=tmp_path)
    assert done == (
        1,
        "",
        f"error: /metrics (metrics.port): cannot listen on 127.0.0.1:{port}: Address already"
        " in use\n",
    )
    with connect_db(empty_db_url) as db:
        tables = db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [(0,)]
