"""etc/prometheus: promtool checks, the alert rules' unit tests, and a real server scraping
a real metrics endpoint."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from prometheus_client import REGISTRY

from kalshi.config import HttpConfig, MetricsConfig
from kalshi.http import serve_endpoints
from kalshi.store import metrics as store_metrics
from kalshi.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "etc/prometheus/prometheus.yml"
RULES = ROOT / "etc/prometheus/alerts.yml"
RULE_TESTS = Path(__file__).parent / "data/alerts_test.yml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_config(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_check_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_alert_rules_unit_tests(promtool: str) -> None:
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("SUCCESS")


def test_every_alert_is_unit_tested() -> None:
    alerts = [
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert sorted(alerts) == sorted(tested)
    assert len(alerts) == 8


def test_scrape_targets_are_the_configured_metrics_ports() -> None:
    jobs = {
        job["job_name"]: sorted(t for sc in job["static_configs"] for t in sc["targets"])
        for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]
    }
    assert jobs == {
        "gatherer": ["gatherer-a:9090", "gatherer-b:9090", "host.docker.internal:9090"],
        "dedup": ["dedup:9091", "host.docker.internal:9091"],
    }
    assert MetricsConfig().port == 9090


def _test_config(metrics_port: int) -> dict[str, Any]:
    """etc/prometheus/prometheus.yml with the gatherer job pointed at the test endpoint."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES)]
    config["scrape_configs"] = [
        job | {"static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        for job in config["scrape_configs"]
        if job["job_name"] == "gatherer"
    ]
    return config


async def _query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    answer = (await client.get("/api/v1/query", params={"query": promql})).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def test_a_real_prometheus_scrapes_the_metrics_endpoint(
    prometheus_bin: str, tmp_path: Path, dashboard_queries: list[str]
) -> None:
    store_metrics.DB_UP.set(1)
    store_metrics.ROWS_WRITTEN.labels(table="trades").inc(7)
    written = REGISTRY.get_sample_value("kalshi_store_rows_written_total", {"table": "trades"})
    assert written is not None and written >= 7

    metrics_port, web_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(_test_config(metrics_port)))
    log = (tmp_path / "prometheus.log").open("wb")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_endpoints(
                    HttpConfig(port=0),
                    MetricsConfig(port=metrics_port),
                    health=lambda: {"status": "ok"},
                    task_status=task_status,
                )
            )
            server = await trio.lowlevel.open_process(
                [
                    prometheus_bin,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{web_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as client:
                    await _until_target_up(client, server, tmp_path)
                    await _check_scraped(client, metrics_port, written)
                    # Every Grafana panel query is valid PromQL for this server.
                    for promql in dashboard_queries:
                        await _query(client, promql.replace("$__rate_interval", "1m"))
            finally:
                server.terminate()
                with trio.move_on_after(20, shield=True):
                    await server.wait()
                log.close()
            nursery.cancel_scope.cancel()


async def _until_target_up(client: httpx.AsyncClient, server: trio.Process, tmp_path: Path) -> None:
    while True:
        if server.poll() is not None:
            pytest.fail((tmp_path / "prometheus.log").read_text())
        try:
            # Prometheus listens before it is ready: until then it answers 503 in plain text
            ready = (await client.get("/-/ready")).status_code == 200
            targets = (
                ready and (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
            )
            if (
                targets
                and targets[0]["health"] == "up"
                and await _query(client, 'kalshi_store_rows_written_total{table="trades"}')
            ):
                return
        except httpx.TransportError:
            pass  # not listening yet
        await trio.sleep(0.2)


async def _check_scraped(client: httpx.AsyncClient, metrics_port: int, written: float) -> None:
    targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
    assert [(t["labels"]["job"], t["labels"]["instance"], t["health"]) for t in targets] == [
        ("gatherer", f"127.0.0.1:{metrics_port}", "up")
    ]
    up = await _query(client, 'up{job="gatherer"}')
    assert [sample["value"][1] for sample in up] == ["1"]
    rows = await _query(client, 'kalshi_store_rows_written_total{table="trades"}')
    assert [float(sample["value"][1]) for sample in rows] == [written]
    db_up = await _query(client, "kalshi_store_db_up")
    assert [sample["value"][1] for sample in db_up] == ["1"]
    groups = (await client.get("/api/v1/rules")).json()["data"]["groups"]
    assert sorted((g["name"], len(g["rules"])) for g in groups) == [
        ("kalshi-dedup", 1),
        ("kalshi-gatherer", 7),
    ]
    assert {r["health"] for g in groups for r in g["rules"]} <= {"ok", "unknown"}


def test_every_alert_links_a_runbook_section_of_operations_md() -> None:
    headings = {
        line.lstrip("#").strip().lower()
        for line in (ROOT / "docs/operations.md").read_text().splitlines()
        if line.startswith("#### ")
    }
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
            assert rule["alert"].lower() in headings
