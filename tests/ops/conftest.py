"""Fixtures of the operations tests: the documented environment and Prometheus binaries.

``promtool`` and ``prometheus`` come from Debian's ``prometheus`` package, which ``.ci/run``
installs; where it is missing the tests that need it skip and say how to install it. Under CI
(``CI`` set, as ``.ci/run`` runs) a missing binary fails instead: nothing skips there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from kalshi.config import load_env_file

ROOT = Path(__file__).resolve().parents[2]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        how = f"{name} not found: install Debian's prometheus (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(how)
        pytest.skip(how)
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _binary("prometheus")


@pytest.fixture
def documented_env() -> dict[str, str]:
    """``.env.example`` as the environment: what a user who copied it to ``.env`` has."""
    return load_env_file(ROOT / ".env.example")


def _dashboard_queries() -> list[str]:
    queries = []
    for path in sorted((ROOT / "etc/grafana/dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            queries.extend(target["expr"] for target in panel.get("targets", ()))
    return queries


@pytest.fixture(scope="session")
def dashboard_queries() -> list[str]:
    """Every PromQL query of every provisioned Grafana dashboard, in panel order."""
    return _dashboard_queries()
