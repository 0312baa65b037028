"""The justfile: every seed recipe listed with a description, and the Docker-less path run
for real (embedded PostgreSQL, weed, Prometheus) in a scratch copy of the recipes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kalshi.testing import free_port
from kalshi.testing.s3server import S3Server, find_weed

ROOT = Path(__file__).resolve().parents[2]
SEED = [
    "dev",
    "up",
    "down",
    "up-monitoring",
    "migrate",
    "reset-db",
    "run-gatherer",
    "run-dedup",
    "test",
    "test-integration",
    "test-coverage",
    "build",
    "clean",
]
EXTRA = ["demo", "lint", "bench", "bench-smoke", "soak", "scale"]


def _just(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run a recipe; returns (stdout, stderr) and fails the test on a non-zero exit."""
    result = subprocess.run(
        ["just", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, result.stderr


def test_every_recipe_is_listed_with_a_description() -> None:
    listed = {}
    for line in _just("--list")[0].splitlines()[1:]:
        match = re.match(r"^\s+([a-z-]+)(?: \*ARGS)?\s+# (.+)$", line)
        assert match, line
        listed[match[1]] = match[2]
    assert sorted(listed) == sorted(SEED + EXTRA)


def test_test_and_lint_recipes_are_unchanged() -> None:
    text = (ROOT / "justfile").read_text()
    assert "test *ARGS:\n    python -m pytest {{ARGS}}\n" in text
    assert "lint:\n    ruff check kalshi tests benchmarks\n    mypy kalshi\n" in text


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The recipes and what they read, copied where the embedded server may write."""
    path = Path(tempfile.mkdtemp(prefix="kalshi-just-"))
    path.chmod(0o755)  # the embedded server may run as an unprivileged user
    shutil.copy(ROOT / "justfile", path)
    shutil.copytree(ROOT / "scripts", path / "scripts")
    shutil.copytree(ROOT / "etc", path / "etc")
    try:
        yield path
    finally:
        subprocess.run(["just", "down"], cwd=path, capture_output=True, timeout=60, check=False)
        shutil.rmtree(path, ignore_errors=True)


def test_without_docker_up_migrate_monitoring_down_clean(
    scratch: Path, prometheus_bin: str
) -> None:
    find_weed()
    port = free_port()
    env = os.environ | {"KALSHI_NO_DOCKER": "1", "PROMETHEUS_PORT": str(port)}
    env.pop("TIMESCALEDB_URL", None)

    out, notice = _just("up", cwd=scratch, env=env)
    assert notice == (
        "no Docker: starting the embedded PostgreSQL (.kalshi/pg) and a local S3 server (weed)\n"
    )
    assert re.search(r"^postgresql://postgres@127\.0\.0\.1:\d+/kalshi$", out, re.MULTILINE)
    s3 = json.loads((scratch / ".kalshi/s3/state.json").read_text())
    assert s3["bucket"] == "kalshi-data-local"
    client = S3Server(scratch / "unused", access_key="minioadmin", secret_key="minioadmin")
    client.endpoint = s3["endpoint"]
    assert [b["Name"] for b in client.client().list_buckets()["Buckets"]] == ["kalshi-data-local"]

    out, notice = _just("migrate", cwd=scratch, env=env)
    assert notice == "no Docker: migrating the embedded PostgreSQL (.kalshi/pg)\n"
    assert out == "schema up to date\nstorage mode: postgresql\n"

    out, _ = _just("up-monitoring", cwd=scratch, env=env)
    assert f"prometheus: started http://127.0.0.1:{port}" in out
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status/config") as answer:
        loaded = yaml.safe_load(json.load(answer)["data"]["yaml"])
    assert [
        (job["job_name"], [t for sc in job["static_configs"] for t in sc["targets"]])
        for job in loaded["scrape_configs"]
    ] == [("gatherer", ["127.0.0.1:9090"]), ("dedup", ["127.0.0.1:9091"])]

    out, _ = _just("down", cwd=scratch, env=env)
    assert f"s3: stopped (pid {s3['pid']})" in out
    assert "embedded PostgreSQL stopped" in out
    assert "prometheus: stopped" in out

    _just("clean", cwd=scratch, env=env)
    assert sorted(p.name for p in (scratch / ".kalshi").iterdir()) == []


def _status(scratch: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["kalshi", "db", "status"], cwd=scratch, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    return (done.stdout + done.stderr).splitlines()[0]


def test_run_dedup_without_up_stops_the_postgresql_it_started(scratch: Path) -> None:
    """Outside tester pbreak8 F8: `just run-dedup --once` without `just up` failed with
    config errors (exit 2) and left the embedded PostgreSQL it had started running."""
    find_weed()
    env = os.environ | {"KALSHI_NO_DOCKER": "1"}
    env.pop("TIMESCALEDB_URL", None)
    stopped = "server: embedded, stopped (.kalshi/pg); run `kalshi db up`"

    # No S3 server: it says so and starts nothing.
    done = subprocess.run(
        ["just", "run-dedup", "--once"], cwd=scratch, env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "s3: not running; start it with `just up`\n" in done.stderr
    assert "config error" not in done.stderr
    assert _status(scratch, env) == stopped

    # The S3 server up, the command fails after the recipe started PostgreSQL: stopped.
    subprocess.run(
        ["python", "scripts/local_services.py", "s3", "up"], cwd=scratch, env=env,
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    done = subprocess.run(
        ["just", "run-dedup", "--once", "--no-such-option"], cwd=scratch, env=env,
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "embedded PostgreSQL stopped\n" in done.stderr
    assert _status(scratch, env) == stopped

    # It succeeds: stopped too. A server `just up` started stays running.
    _just("run-dedup", "--once", cwd=scratch, env=env)
    assert _status(scratch, env) == stopped
    _just("up", cwd=scratch, env=env)
    _just("run-dedup", "--once", cwd=scratch, env=env)
    assert _status(scratch, env).startswith("server: embedded, running on port ")
