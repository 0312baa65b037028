"""`kalshi status` as a user runs it, against the real endpoints serving literal documents."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from kalshi.config import HttpConfig, MetricsConfig
from kalshi.http import (
    Endpoints,
    Listening,
    health_route,
    metrics_route,
    serve_endpoints,
    serve_http,
)
from kalshi.testing import free_port, free_ports

HEALTH: dict[str, Any] = {
    "status": "ok",
    "gatherer_id": "g-7",
    "uptime_s": 42.25,
    "connections": [
        {
            "name": "trade-0",
            "channel": "trade",
            "state": "live",
            "markets": 0,
            "last_message_age_s": 1.5,
            "reconnects": 1,
            "messages": 250,
        }
    ],
    "channels": {"trade": {"messages": 250}},
    "tables": {"trades": {"queue": 0, "rows_written": 240, "spool_rows": 0, "dead_letters": 0}},
    "db": {"state": "up"},
    "markets": {"tracked": 3, "active": 2, "books": 2},
    "gaps": 0,
    "resnapshots": 0,
    "decode_errors": 1,
    "journal": {"records": 260, "bytes": 51200, "pressure": False},
    "top_markets": [{"ticker": "KXA-1", "messages": 200, "best_bid": 61000, "best_ask": 62000}],
}

FRAME = """\
kalshi gatherer g-7   status ok   uptime 42.2s   db up
journal 260 records · 51.2 kB · pressure no
markets 3 tracked · 2 active · 2 books   gaps 0   resnapshots 0   decode errors 1   reconnects 1

connections
connection   channel   state   markets   msgs   msgs/s   last msg   reconnects
──────────────────────────────────────────────────────────────────────────────
trade-0      trade     live          0    250        -       1.5s            1

channels                             tables
channel   msgs   msgs/s   history    table    queue   spool   written   dead   rows/s   history
─────────────────────────────────    ──────────────────────────────────────────────────────────
trade      250        -              trades       0       0       240      0        -

top markets                          metrics
ticker   msgs       bid       ask    metric              value   /s
─────────────────────────────────    ──────────────────────────────
KXA-1     200   $0.6100   $0.6200    kalshi_frames         250    -
                                     kalshi_queue_rows      12    -
"""


async def kalshi(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "kalshi", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


def lines(output: bytes) -> list[str]:
    return [line.rstrip() for line in output.decode().splitlines()]


async def test_status_once_prints_one_plain_frame(nursery: trio.Nursery) -> None:
    registry = CollectorRegistry()
    Counter("kalshi_frames", "Frames", ["channel"], registry=registry).labels("trade").inc(250)
    Gauge("kalshi_queue_rows", "Rows queued", registry=registry).set(12)
    with trio.fail_after(30):
        health: Listening = await nursery.start(
            serve_http, "127.0.0.1", None, {"/health": health_route(lambda: HEALTH)}
        )
        metrics: Listening = await nursery.start(
            serve_http, "127.0.0.1", None, {"/metrics": metrics_route(registry)}
        )
        done = await kalshi("status", health.url, "--metrics-url", metrics.url, "--once")
    assert (done.returncode, done.stderr) == (0, b"")
    assert b"\x1b" not in done.stdout
    assert lines(done.stdout) == FRAME.splitlines()


async def test_status_once_shows_health_when_the_metrics_server_is_unreachable(
    nursery: trio.Nursery,
) -> None:
    """/health and /metrics are read at once, and a metrics server that does not answer
    costs the screen its metrics table only, with one error line (outside tester F6)."""
    port = free_port()  # nothing listens there
    with trio.fail_after(30):
        health: Listening = await nursery.start(
            serve_http, "127.0.0.1", None, {"/health": health_route(lambda: HEALTH)}
        )
        done = await kalshi(
            "status", health.url, "--metrics-url", f"http://127.0.0.1:{port}", "--once"
        )
    assert (done.returncode, done.stderr) == (0, b"")
    shown = lines(done.stdout)
    assert shown[:3] == [
        f"error: metrics: cannot reach http://127.0.0.1:{port}/metrics: "
        f"all attempts to connect to 127.0.0.1:{port} failed",
        "kalshi gatherer g-7   status ok   uptime 42.2s   db up",
        "journal 260 records · 51.2 kB · pressure no",
    ]
    assert not any("metrics " in line and "value" in line for line in shown)


async def test_status_once_shows_a_degraded_service(nursery: trio.Nursery) -> None:
    document = HEALTH | {"status": "degraded", "db": {"state": "down"}}
    with trio.fail_after(30):
        bound: Listening = await nursery.start(
            serve_http, "127.0.0.1", None, {"/health": health_route(lambda: document)}
        )
        done = await kalshi("status", bound.url + "/health", "--once")
    assert (done.returncode, done.stderr) == (0, b"")
    assert lines(done.stdout)[:2] == [
        "kalshi gatherer g-7   status degraded   uptime 42.2s   db down",
        "journal 260 records · 51.2 kB · pressure no",
    ]


async def test_status_unreachable_is_one_line_and_exit_1() -> None:
    port = free_port()  # nothing listens there
    with trio.fail_after(30):
        done = await kalshi("status", f"http://127.0.0.1:{port}", "--once")
    assert (done.returncode, done.stdout) == (1, b"")
    assert lines(done.stderr) == [
        f"error: cannot reach http://127.0.0.1:{port}/health: "
        f"all attempts to connect to 127.0.0.1:{port} failed"
    ]


async def test_status_of_something_without_health_is_one_line_and_exit_1(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(30):
        bound: Listening = await nursery.start(
            serve_http, "127.0.0.1", None, {"/other": health_route(lambda: HEALTH)}
        )
        done = await kalshi("status", bound.url, "--once")
    assert (done.returncode, done.stdout) == (1, b"")
    assert lines(done.stderr) == [f"error: HTTP 404: {bound.url}/health answered Not Found"]


async def test_status_takes_both_addresses_from_a_gatherer_config(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    ports = free_ports(2)
    config = tmp_path / "gatherer.yaml"
    config.write_text(f"http:\n  port: {ports[0]}\nmetrics:\n  port: {ports[1]}\n")
    registry = CollectorRegistry()
    Gauge("kalshi_queue_rows", "Rows queued", registry=registry).set(12)
    with trio.fail_after(30):
        endpoints: Endpoints = await nursery.start(
            partial(
                serve_endpoints,
                HttpConfig(port=ports[0]),
                MetricsConfig(port=ports[1]),
                health=lambda: {"status": "ok", "gatherer_id": "from-config"},
                registry=registry,
            )
        )
        done = await kalshi("status", "--config", str(config), "--once")
    assert endpoints.health is not None and endpoints.health.port == ports[0]
    assert (done.returncode, done.stderr) == (0, b"")
    assert lines(done.stdout) == [
        "kalshi gatherer from-config   status ok",
        "",
        "metrics",
        "metric              value   /s",
        "─" * 30,
        "kalshi_queue_rows      12    -",
    ]
