"""docs/operations.md's metric table names every metric the code registers, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

from tests.ops.test_grafana import exported_samples

ROOT = Path(__file__).resolve().parents[2]


def documented() -> set[str]:
    """The ``kalshi_*`` names in the first column of the metric table."""
    text = (ROOT / "docs/operations.md").read_text()
    section = text.split("### Metrics", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `kalshi_")]
    return {
        name for row in rows for name in re.findall(r"`(kalshi_[a-z0-9_]+)`", row.split("|")[1])
    }


def test_every_registered_metric_is_documented() -> None:
    exported_samples()  # imports every module, registering its metrics
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("kalshi_")
    }
    assert sorted(names - documented()) == []
    assert sorted(documented() - names) == []  # none stale
