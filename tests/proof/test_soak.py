"""The short soak (60 s of faults) as part of `just test`: zero loss, exact checks."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import run_soak


async def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    report = await run_soak(tmp_path / "soak", 60.0, say=lambda line: None)
    table = "\n".join(f"{what}: {value}" for what, value in report.rows)
    assert report.failures == [], table
    names = [name for name, _, _ in report.faults]
    assert len(names) == 13
    rows = dict(report.rows)
    assert rows["trades lost"] == "0"
    assert rows["trades duplicated in production"] == "0"
    assert rows["order books wrong at the end"].startswith("0 of ")
    assert rows["journal lines unreadable"] == "0"
