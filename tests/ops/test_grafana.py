"""The Grafana dashboard: provisioned, complete, and querying only metrics the code exports."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import runpy
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import kalshi

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "etc/grafana/dashboards/kalshi.json"
PROVISIONING = ROOT / "etc/grafana/provisioning"

# Metrics the dashboard and alert rules use that no module exports yet. Anything not
# exported and not listed here fails the test, and so does a listed name once it is
# exported: then remove it from this list. (Empty: every name is exported now.)
PENDING: set[str] = set()
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


def exported_samples() -> set[str]:
    """Sample names of every metric any kalshi module registers (imports them all)."""
    for module in pkgutil.walk_packages(kalshi.__path__, "kalshi."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("kalshi_")
        for suffix in _SUFFIXES[family.type]
    }


def metric_names(promql: str) -> set[str]:
    """The ``kalshi_*`` metric names a PromQL expression selects."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    without_matchers = re.sub(r"\{[^}]*\}", "", without_strings)
    return set(re.findall(r"\bkalshi_[a-z0-9_]+\b", without_matchers))


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in panels if p["type"] != "row"]


def test_metric_names_are_parsed_from_queries() -> None:
    query = 'histogram_quantile(0.9, sum by (le) (rate(kalshi_latency_bucket{x="kalshi_no"}[1m])))'
    assert metric_names(query) == {"kalshi_latency_bucket"}
    assert metric_names("kalshi_a_total / on (job) kalshi_b") == {"kalshi_a_total", "kalshi_b"}


def test_every_dashboard_query_names_an_exported_metric(dashboard_queries: list[str]) -> None:
    exported = exported_samples()
    used = set().union(*(metric_names(q) for q in dashboard_queries))
    assert sorted(used - exported - PENDING) == []
    assert all(metric_names(q) or q.startswith("up{") for q in dashboard_queries)


def test_every_alert_rule_names_an_exported_metric() -> None:
    exported = exported_samples()
    groups = yaml.safe_load((ROOT / "etc/prometheus/alerts.yml").read_text())["groups"]
    used = set().union(*(metric_names(r["expr"]) for g in groups for r in g["rules"]))
    assert sorted(used - exported - PENDING) == []


def test_pending_names_are_still_pending(dashboard_queries: list[str]) -> None:
    assert sorted(PENDING & exported_samples()) == [], "exported now: remove from PENDING"
    used = set().union(*(metric_names(q) for q in dashboard_queries))
    assert used >= PENDING
    assert {"kalshi_dedup_lag_seconds", "kalshi_export_bytes_total"} <= used


def test_the_dashboard_has_every_required_panel() -> None:
    titles = [p["title"] for p in _panels()]
    assert titles == [
        "Messages/s per channel",
        "Bytes/s per channel",
        "End-to-end latency (exchange ts -> writer)",
        "WebSocket connections by state",
        "Reconnects",
        "Gaps and re-snapshots",
        "Markets tracked by status",
        "Decode errors and REST requests",
        "Rows/s per table",
        "Rows waiting: memory and spool",
        "Spool size",
        "Database up",
        "Batch write time p99, errors, dead letters",
        "Journal",
        "Dedup lag per gatherer",
        "Rows merged into production/s",
        "Export throughput",
        "Gatherer databases up (dedup), holes, source switches",
        "Scrape targets up",
    ]
    latency = next(p for p in _panels() if p["title"].startswith("End-to-end latency"))
    assert [t["legendFormat"] for t in latency["targets"]] == ["p5", "p9", "p99"]


def test_panels_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())
    uid = sources["datasources"][0]["uid"]
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}
            assert {t["datasource"]["uid"] for t in panel["targets"]} == {uid}
        pos = panel["gridPos"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, panel["title"]
        cells |= mine
    ids = [p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboards_are_provisioned_from_the_compose_mount() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards/kalshi.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    grafana = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["grafana"]
    assert f"./etc/grafana/dashboards:{path}:ro" in grafana["volumes"]


def test_the_dashboard_file_is_what_the_generator_writes() -> None:
    generator = runpy.run_path(str(ROOT / "scripts/grafana_dashboard.py"))
    assert json.loads(DASHBOARD.read_text()) == generator["dashboard"]()
