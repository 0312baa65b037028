"""The simulator and the demo config as a new user runs them, as processes: `kalshi sim`
then `kalshi gather --config etc/demo.yaml` sign in with no variable set; `kalshi demo`
without a terminal never wraps a line; a taken port names the component, address and port.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kalshi.cli.demo import DEMO_CONFIG
from kalshi.ports import free_ports
from kalshi.store import connect_db


def _demo_config(tmp_path: Path, db_url: str) -> Path:
    """The shipped demo config, but on the test's database (its `kalshi:` section as is)."""
    text = DEMO_CONFIG.read_text()
    assert text.count('url: ""') == 1
    path = tmp_path / "demo.yaml"
    path.write_text(text.replace('url: ""', f'url: "{db_url}"'))
    return path


def _env(port: int) -> dict[str, str]:
    """No KALSHI_SIM_KEY_ID / KALSHI_SIM_KEY: the demo config's defaults must do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "COLUMNS"))}
    return env | {
        "KALSHI_SIM_URL": f"http://127.0.0.1:{port}/trade-api/v2",
        "KALSHI_SIM_WS_URL": f"ws://127.0.0.1:{port}/trade-api/ws/v2",
        "HTTP_PORT": "0",
        "METRICS_PORT": "0",
    }


def _kalshi(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def _sim(port: int, cwd: Path, env: dict[str, str]) -> Iterator[list[str]]:
    """`kalshi sim` with its default key id and key file; yields what it printed once it
    serves (its last line, `api_secret: ...`, comes after the socket listens)."""
    with subprocess.Popen(
        [sys.executable, "-m", "kalshi", "sim", "--port", str(port), "--markets", "30",
         "--active", "10", "--rate", "300", "--start", "2026-11-25"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            printed: list[str] = []
            while not printed or not printed[-1].lstrip().startswith("api_secret:"):
                line = proc.stdout.readline()
                assert line, f"kalshi sim exited: {proc.wait()} {printed}"
                printed.append(line.rstrip("\n"))
            yield printed
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        assert proc.returncode == 0


def test_sim_then_gather_with_the_demo_config_signs_in(db_url: str, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = _env(port)
    with _sim(port, tmp_path, env) as printed:
        assert "key id     sim" in printed
        assert "key file   .kalshi/sim/key.pem" in printed
        result = _kalshi(
            "gather", "--config", str(_demo_config(tmp_path, db_url)), "--duration", "4",
            cwd=tmp_path, env=env,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "401" not in result.stderr
    said = re.fullmatch(r"stopped; (\d+) frames received \(.*\)\n", result.stdout)
    assert said is not None, result.stdout
    assert int(said[1]) > 0


def test_demo_lines_are_never_wrapped_without_a_terminal(db_url: str, tmp_path: Path) -> None:
    (port,) = free_ports(1, below=65536)
    result = _kalshi(
        "demo", "--config", str(_demo_config(tmp_path, db_url)), "--duration", "3", "--no-tui",
        "--markets", "30", "--active", "10", cwd=tmp_path, env=_env(port) | {"COLUMNS": "40"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    assert lines[0] == f"database: {db_url}"
    assert lines[1] == (
        f"simulator: http://127.0.0.1:{port}/trade-api/v2  ws://127.0.0.1:{port}/trade-api/ws/v2"
    )
    assert re.fullmatch(r"stopped; rows written: \{'trades': \d+, .*\}", lines[2]), lines[2]


def test_a_taken_port_names_the_component_address_and_port(
    empty_db_url: str, tmp_path: Path
) -> None:
    # The ports are bound first (ports_first): the database is not migrated (was: it was).
    db_url = empty_db_url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _kalshi(
            "demo", "--config", str(_demo_config(tmp_path, db_url)), "--duration", "3",
            "--no-tui", cwd=tmp_path, env=_env(port),
        )  # fmt: skip
        assert (result.returncode, result.stderr) == (
            1,
            f"error: simulator: cannot listen on 127.0.0.1:{port}: Address already in use\n",
        )
        (free,) = free_ports(1)
        result = _kalshi(
            "demo", "--config", str(_demo_config(tmp_path, db_url)), "--duration", "3",
            "--no-tui", cwd=tmp_path, env=_env(free) | {"METRICS_PORT": str(port)},
        )  # fmt: skip
        assert (result.returncode, result.stderr) == (
            1,
            f"error: /metrics (metrics.port): cannot listen on 127.0.0.1:{port}: Address already"
            " in use\n",
        )
    with connect_db(db_url) as db:
        tables = db.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == [(0,)]
