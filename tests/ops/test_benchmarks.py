"""`just bench-smoke` (run by CI) passes ``--smoke --results DIR`` to every benchmark that
`benchmarks/report.py` runs: each must accept both, or CI fails after the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import scripts  # noqa: E402


@pytest.mark.parametrize("script", scripts(), ids=lambda p: p.name)
def test_every_benchmark_takes_the_smoke_and_results_options(script: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--smoke" in result.stdout
    assert "--results" in result.stdout
