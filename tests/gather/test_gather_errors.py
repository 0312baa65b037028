"""`kalshi gather` as a process: every expected failure is one ``error:`` line (issue 18 item 8).

Trio wraps a service's error in exception groups; the CLI unwraps them and prints the cause
on one line, exit 1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import trio
import yaml

from kalshi.sim import open_sim_exchange
from kalshi.store.spool import lock_directory
from kalshi.testing import shared_key_pem


def _config(tmp_path: Path, db_url: str, **changes: object) -> Path:
    key = tmp_path / "key.pem"
    key.write_bytes(shared_key_pem())
    config: dict[str, object] = {
        "gatherer_id": "err-1",
        "kalshi": {
            "rest_url": "http://127.0.0.1:9/trade-api/v2",
            "ws_url": "ws://127.0.0.1:9/trade-api/ws/v2",
            "api_key": "k",
            "api_secret": str(key),
        },
        "timescaledb": {"url": db_url},
        "spool": {"dir": str(tmp_path / "spool"), "dead_letter_dir": str(tmp_path / "dead")},
        "journal": {"dir": str(tmp_path / "journal")},
        "snapshot_poller": {"enabled": False},
        "http": {"port": 0},
        "metrics": {"enabled": False},
    }
    config.update(changes)
    path = tmp_path / "gatherer.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _gather(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalshi", "gather", "--config", str(path), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_spool_in_use_is_one_line(db_url: str, tmp_path: Path) -> None:
    path = _config(tmp_path, db_url)
    with lock_directory(tmp_path / "spool"):
        result = _gather(path)
        debug = _gather(path, "--debug")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1:] == [
        f"error: {tmp_path / 'spool'}: spool in use by another process"
    ]
    assert "Traceback" not in result.stderr
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "spool in use by another process" in debug.stderr


def test_journal_directory_that_is_a_file_is_one_line(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "journal").write_text("not a directory\n")
    result = _gather(_config(tmp_path, db_url))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1:] == [
        f"error: {tmp_path / 'journal' / 'err-1'}: cannot use the journal directory:"
        " Not a directory"
    ]


def test_unusable_dead_letter_directory_is_one_line(db_url: str, tmp_path: Path) -> None:
    # Fresh-user finding 12: checked at start like journal.dir and spool.dir.
    (tmp_path / "dead").write_text("not a directory\n")
    result = _gather(_config(tmp_path, db_url))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1:] == [
        f"error: {tmp_path / 'dead'}: cannot use the dead-letter directory: File exists"
    ]


async def test_a_websocket_url_answered_404_is_one_line(db_url: str, tmp_path: Path) -> None:
    # Fresh-user finding 4: no such endpoint is a configuration error, not retried forever.
    async with open_sim_exchange(markets=4, active=2, seed=1, port=0) as sim:
        (tmp_path / "key.pem").write_bytes(sim.private_key_pem)
        wrong = sim.ws_url.replace("/trade-api/ws/v2", "/elsewhere")
        path = _config(
            tmp_path,
            db_url,
            kalshi={
                "rest_url": sim.rest_url,
                "ws_url": wrong,
                "api_key": sim.key_id,
                "api_secret": str(tmp_path / "key.pem"),
            },
        )
        result = await trio.to_thread.run_sync(_gather, path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1:] == [
        f"error: kalshi.ws_url: {wrong}: websocket handshake answered HTTP 404"
        " (the WebSocket path is /trade-api/ws/v2)"
    ]


def test_second_gatherer_with_the_same_id_is_refused(db_url: str, tmp_path: Path) -> None:
    # Issue 18 item 7: a journal owned by a live process with the same gatherer id.
    folder = tmp_path / "journal" / "err-1"
    folder.mkdir(parents=True)
    with (folder / ".lock").open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = _gather(_config(tmp_path, db_url))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1:] == [
        f"error: {folder}: journal in use by another process with gatherer_id 'err-1'"
    ]
