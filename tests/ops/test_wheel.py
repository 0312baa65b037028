"""The built wheel stands alone: installed into a fresh virtual environment, with no source
tree anywhere on the path, it migrates a real database and runs the demo from any directory
(the migrations and the demo config ship inside the package)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from site import getsitepackages

import pytest

from kalshi.store import connect_db
from kalshi.store.migrate import load_migrations
from kalshi.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    # World-searchable: as root the embedded server runs as an unprivileged user.
    path = Path(tempfile.mkdtemp(prefix="kalshi-wheel-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(scratch: Path) -> Path:
    """``bin/`` of a venv holding only the wheel; the dependencies come from this Python's
    site-packages through a plain path entry (which runs none of its .pth files, so the
    editable install of the source tree stays out)."""
    dist = scratch / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("kalshi-*.whl")
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.check_output(
            [
                venv / "bin/python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    # site.getsitepackages(): the system's too, when the tests run in a venv that sees them
    here = sysconfig.get_paths()
    paths = dict.fromkeys([here["purelib"], here["platlib"], *getsitepackages()])
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in paths))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install",
         "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return venv / "bin"


def _kalshi(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [bin_dir / "kalshi", *args],
        cwd=cwd,
        env=(env or os.environ) | {"PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_wheel_imports_from_itself(installed: Path, scratch: Path) -> None:
    where = subprocess.check_output(
        [installed / "python", "-c", "import kalshi; print(kalshi.__file__)"],
        cwd=scratch,
        text=True,
    )
    assert Path(where.strip()).is_relative_to(scratch / "venv")


def test_the_wheel_migrates_a_real_database(
    installed: Path, scratch: Path, empty_db_url: str
) -> None:
    out = _kalshi(installed, "db", "migrate", "--url", empty_db_url, cwd=scratch)
    assert out.splitlines()[-1] == "storage mode: postgresql"
    with connect_db(empty_db_url) as db:
        names = [n for (n,) in db.query("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [m.name for m in load_migrations()]


def test_the_wheel_runs_db_up_migrate_and_the_demo_anywhere(installed: Path, scratch: Path) -> None:
    home = scratch / "anywhere"
    home.mkdir(mode=0o755)
    port = free_port()
    env = os.environ | {
        "KALSHI_SIM_URL": f"http://127.0.0.1:{port}/trade-api/v2",
        "KALSHI_SIM_WS_URL": f"ws://127.0.0.1:{port}/trade-api/ws/v2",
        "HTTP_PORT": "0",
        "METRICS_PORT": "0",
    }
    env.pop("TIMESCALEDB_URL", None)
    try:
        url = _kalshi(installed, "db", "up", cwd=home).splitlines()[-1]
        assert re.fullmatch(r"postgresql://postgres@127\.0\.0\.1:\d+/kalshi", url)
        _kalshi(installed, "db", "migrate", cwd=home)
        out = _kalshi(
            installed, "demo", "--duration", "5", "--no-tui", "--markets", "200",
            "--active", "20", cwd=home, env=env,
        )  # fmt: skip
        written = re.search(r"'trades': (\d+), 'orderbook_deltas': (\d+)", out)
        assert written is not None, out
        with connect_db(url) as db:  # what it says it wrote is in the database
            stored = db.query(
                "SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM orderbook_deltas)"
            )
        assert stored == [(int(written[1]), int(written[2]))]
    finally:
        subprocess.run([installed / "kalshi", "db", "down"], cwd=home, capture_output=True)
