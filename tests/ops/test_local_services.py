"""scripts/local_services.py run as a user runs it: the S3 server keeps its port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalshi.testing.s3server import S3Server, find_weed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="kalshi-local-services-"))
    try:
        yield root
    finally:
        _services(root, "s3", "down")
        shutil.rmtree(root, ignore_errors=True)


def _services(root: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/local_services.py"), "--dir", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_s3_down_then_up_keeps_the_endpoint(state_dir: Path) -> None:
    find_weed()
    _services(state_dir, "s3", "up")
    first = json.loads((state_dir / "s3/state.json").read_text())
    assert _services(state_dir, "s3", "down") == f"s3: stopped (pid {first['pid']})\n"
    out = _services(state_dir, "s3", "up")
    second = json.loads((state_dir / "s3/state.json").read_text())
    assert second["endpoint"] == first["endpoint"]
    assert out == (
        f"s3: started {first['endpoint']} (weed, pid {second['pid']}), bucket kalshi-data-local\n"
    )
    env = _services(state_dir, "s3", "env").splitlines()
    assert env[0] == f"export S3_ENDPOINT={first['endpoint']}"


def test_a_kept_port_held_by_another_process_is_a_clear_error(state_dir: Path) -> None:
    server = S3Server(state_dir / "own")
    server.start()
    server.stop()
    kept = state_dir / "own/ports.json"
    port = json.loads(kept.read_text())["s3.port"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(RuntimeError) as raised:
            S3Server(state_dir / "own").start()
    assert str(raised.value) == (
        f"S3 server cannot start: ports kept in {kept} so the endpoint never changes are"
        f" taken (s3.port={port}: Address already in use); stop the process using them, or"
        " delete that file to choose new ports"
    )
    again = S3Server(state_dir / "own")
    again.start()
    try:
        assert again.endpoint == f"http://127.0.0.1:{port}"
    finally:
        again.stop()
