"""The service endpoints over a real loopback socket, requested with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from kalshi.config import HttpConfig, MetricsConfig
from kalshi.dedup import metrics as dedup_metrics_module
from kalshi.errors import ConfigError
from kalshi.http import (
    Endpoints,
    Handler,
    Listening,
    debug_markets_route,
    health_route,
    metrics_route,
    serve_endpoints,
    serve_http,
)
from kalshi.http.server import HttpServer
from kalshi.http.views import dedup_metrics, gatherer_metrics
from kalshi.testing import free_port
from tests.ops.test_grafana import exported_samples

MARKETS = [
    {"ticker": f"KX{series}-{n:02d}", "status": status}
    for series, status in (("A", "active"), ("B", "finalized"))
    for n in range(5)
]


def debug_markets(
    status: str | None, prefix: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """A registry page as the gatherer serves it: the cursor is the next index."""
    rows = [
        m
        for m in MARKETS
        if (status is None or m["status"] == status)
        and (prefix is None or m["ticker"].startswith(prefix))
    ]
    start = int(cursor) if cursor is not None else 0
    if start > len(rows):
        raise ValueError(f"cursor: {cursor!r} is past the end")
    page = rows[start : start + limit]
    after = start + len(page)
    return {"markets": page, "cursor": str(after) if after < len(rows) else None}


class Document:
    """The health document a test sets, returned by an async callable."""

    def __init__(self) -> None:
        self.value: dict[str, Any] = {"status": "ok", "gatherer_id": "g1"}

    async def __call__(self) -> Mapping[str, Any]:
        await trio.lowlevel.checkpoint()
        return self.value


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[tuple[httpx.AsyncClient, Document]]:
    document = Document()
    routes: dict[str, Handler] = {
        "/health": health_route(document),
        "/debug/markets": debug_markets_route(debug_markets),
    }
    bound: Listening = await nursery.start(serve_http, "127.0.0.1", None, routes)
    async with httpx.AsyncClient(base_url=bound.url) as client:
        yield client, document


async def test_health_status_maps_to_http_status(
    served: tuple[httpx.AsyncClient, Document],
) -> None:
    client, document = served
    with trio.fail_after(10):
        ok = await client.get("/health")
        document.value = {"status": "degraded", "db": {"state": "down"}}
        degraded = await client.get("/health")
        document.value = {"db": {"state": "up"}}
        missing = await client.get("/health")
    assert (ok.status_code, ok.json()) == (200, {"status": "ok", "gatherer_id": "g1"})
    assert ok.headers["content-type"] == "application/json"
    assert (degraded.status_code, degraded.json()) == (
        503,
        {"status": "degraded", "db": {"state": "down"}},
    )
    assert missing.status_code == 503


async def test_debug_markets_pages_and_filters(
    served: tuple[httpx.AsyncClient, Document],
) -> None:
    client, _ = served
    pages = []
    with trio.fail_after(10):
        cursor = None
        while True:
            params = {"limit": "4"} | ({"cursor": cursor} if cursor else {})
            body = (await client.get("/debug/markets", params=params)).json()
            pages.append([m["ticker"] for m in body["markets"]])
            cursor = body["cursor"]
            if cursor is None:
                break
        settled = await client.get("/debug/markets?status=finalized&prefix=KXB-0&limit=2")
        empty_filters = await client.get("/debug/markets?status=&prefix=")
    assert pages == [
        ["KXA-00", "KXA-01", "KXA-02", "KXA-03"],
        ["KXA-04", "KXB-00", "KXB-01", "KXB-02"],
        ["KXB-03", "KXB-04"],
    ]
    assert settled.status_code == 200
    assert settled.json() == {
        "markets": [
            {"ticker": "KXB-00", "status": "finalized"},
            {"ticker": "KXB-01", "status": "finalized"},
        ],
        "cursor": "2",
    }
    assert len(empty_filters.json()["markets"]) == 10


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "limit: expected an integer from 1 to 1000, got '0'"),
        ("limit=1001", "limit: expected an integer from 1 to 1000, got '1001'"),
        ("limit=ten", "limit: expected an integer from 1 to 1000, got 'ten'"),
        ("limit=-1", "limit: expected an integer from 1 to 1000, got '-1'"),
        ("limit=1&limit=2", "limit: given 2 times"),
        ("stat=open", "unknown parameter 'stat'"),
        (
            "status=bogus",
            "status: expected one of initialized, inactive, active, closed, determined,"
            " disputed, amended, finalized, got 'bogus'",
        ),
        (
            "prefix=KX%20A",
            "prefix: expected 1-128 of A-Z a-z 0-9 _ . -, got 'KX A'",
        ),
        ("cursor=99", "cursor: '99' is past the end"),
    ],
)
async def test_debug_markets_rejects_bad_parameters(
    served: tuple[httpx.AsyncClient, Document], query: str, error: str
) -> None:
    client, _ = served
    with trio.fail_after(10):
        response = await client.get(f"/debug/markets?{query}")
    assert (response.status_code, response.json()) == (400, {"error": error})


async def test_unknown_path_method_and_failing_handler(nursery: trio.Nursery) -> None:
    async def broken() -> Mapping[str, Any]:
        raise RuntimeError("boom")

    routes = {"/health": health_route(broken), "/ok": health_route(lambda: {"status": "ok"})}
    with trio.fail_after(10):
        bound: Listening = await nursery.start(serve_http, "127.0.0.1", None, routes)
        async with httpx.AsyncClient(base_url=bound.url) as client:
            missing = await client.get("/nope")
            post = await client.post("/ok", content=b"x")
            failed = await client.get("/health")
            head = await client.head("/ok")
            after = await client.get("/ok")
    assert (missing.status_code, missing.json()) == (404, {"error": "no such path: /nope"})
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
    assert (failed.status_code, failed.json()) == (500, {"error": "internal error"})
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "16")
    assert (after.status_code, after.json()) == (200, {"status": "ok"})


async def test_malformed_request_gets_400_and_server_keeps_serving(
    nursery: trio.Nursery,
) -> None:
    routes = {"/ok": health_route(lambda: {"status": "ok"})}
    with trio.fail_after(10):
        bound: Listening = await nursery.start(serve_http, "127.0.0.1", None, routes)
        stream = await trio.open_tcp_stream("127.0.0.1", bound.port)
        async with stream:
            await stream.send_all(b"NONSENSE\r\n\r\n")
            reply = b""
            while chunk := await stream.receive_some(4096):
                reply += chunk
        async with httpx.AsyncClient(base_url=bound.url) as client:
            after = await client.get("/ok")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close\r\n" in reply
    assert after.status_code == 200


async def test_metrics_exposes_registry_with_exact_values(nursery: trio.Nursery) -> None:
    registry = CollectorRegistry()
    frames = Counter("kalshi_test_frames", "Frames seen", ["channel"], registry=registry)
    frames.labels(channel="trade").inc(3)
    frames.labels(channel="ticker").inc(7)
    with trio.fail_after(10):
        bound: Listening = await nursery.start(
            serve_http, "127.0.0.1", None, {"/metrics": metrics_route(registry)}
        )
        async with httpx.AsyncClient(base_url=bound.url) as client:
            first = await client.get("/metrics")
            frames.labels(channel="trade").inc()
            second = await client.get("/metrics")
            openmetrics = await client.get(
                "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
            )
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'kalshi_test_frames_total{channel="trade"} 3.0\n' in first.text
    assert 'kalshi_test_frames_total{channel="ticker"} 7.0\n' in first.text
    assert 'kalshi_test_frames_total{channel="trade"} 4.0\n' in second.text
    assert openmetrics.headers["content-type"].startswith(
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )
    assert 'kalshi_test_frames_total{channel="trade"} 4.0\n' in openmetrics.text
    assert openmetrics.text.endswith("# EOF\n")


async def test_endpoints_from_config_separate_ports(nursery: trio.Nursery) -> None:
    http_port, metrics_port = free_port(), free_port()
    with trio.fail_after(10):
        endpoints: Endpoints = await nursery.start(
            lambda task_status: serve_endpoints(
                HttpConfig(port=http_port),
                MetricsConfig(port=metrics_port),
                health=lambda: {"status": "ok"},
                debug_markets=debug_markets,
                task_status=task_status,
            )
        )
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://127.0.0.1:{http_port}/health")
            debug = await client.get(f"http://127.0.0.1:{http_port}/debug/markets?limit=1")
            metrics = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
            no_metrics_here = await client.get(f"http://127.0.0.1:{http_port}/metrics")
            no_health_here = await client.get(f"http://127.0.0.1:{metrics_port}/health")
    assert endpoints == Endpoints(
        Listening("127.0.0.1", http_port), Listening("127.0.0.1", metrics_port)
    )
    assert [r.status_code for r in (health, debug, metrics)] == [200, 200, 200]
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert [no_metrics_here.status_code, no_health_here.status_code] == [404, 404]


async def test_endpoints_shared_port_and_debug_disabled(nursery: trio.Nursery) -> None:
    port = free_port()
    with trio.fail_after(10):
        endpoints: Endpoints = await nursery.start(
            lambda task_status: serve_endpoints(
                HttpConfig(port=port, debug_endpoints=False),
                MetricsConfig(port=port),
                health=lambda: {"status": "ok"},
                debug_markets=debug_markets,
                task_status=task_status,
            )
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await client.get("/health")
            metrics = await client.get("/metrics")
            debug = await client.get("/debug/markets")
    assert endpoints == Endpoints(Listening("127.0.0.1", port), Listening("127.0.0.1", port))
    assert [health.status_code, metrics.status_code, debug.status_code] == [200, 200, 404]


async def test_endpoints_disabled_by_port_zero(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        endpoints: Endpoints = await nursery.start(
            lambda task_status: serve_endpoints(
                HttpConfig(port=0),
                MetricsConfig(port=0),
                health=lambda: {"status": "ok"},
                task_status=task_status,
            )
        )
    assert endpoints == Endpoints(None, None)


async def test_binds_loopback_only(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        bound: Listening = await nursery.start(
            serve_http, "127.0.0.1", None, {"/ok": health_route(lambda: {"status": "ok"})}
        )
    assert bound.host == "127.0.0.1"
    assert bound.url == f"http://127.0.0.1:{bound.port}"


async def test_port_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="None for an ephemeral port"):
        await serve_http("127.0.0.1", 0, {})


async def _exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        reply = b""
        while chunk := await stream.receive_some(65536):
            reply += chunk
    return reply


async def test_limits_on_body_and_head(nursery: trio.Nursery) -> None:
    routes = {"/ok": health_route(lambda: {"status": "ok"})}
    with trio.fail_after(10):
        bound: Listening = await nursery.start(serve_http, "127.0.0.1", None, routes)
        body = await _exchange(
            bound.port,
            b"POST /ok HTTP/1.1\r\nhost: x\r\ncontent-length: 70000\r\n\r\n" + b"x" * 70000,
        )
        head = await _exchange(
            bound.port, b"GET /ok HTTP/1.1\r\nhost: x\r\nx-big: " + b"y" * 40000 + b"\r\n\r\n"
        )
    assert body.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert body.endswith(b'{"error":"request body over 65536 bytes"}\n')
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_silent_client_is_dropped_after_the_read_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """In memory (a connection :func:`serve_http` accepted is served the same way): on
    ``autojump_clock`` bytes still in a loopback socket could let the clock jump first."""
    server = HttpServer({"/ok": health_route(lambda: {"status": "ok"})})

    async def exchange(request: bytes) -> bytes:
        client, served = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_connection, served)
        async with client:
            await client.send_all(request)
            reply = b""
            while chunk := await client.receive_some(65536):
                reply += chunk
        return reply

    with trio.fail_after(60):
        start = trio.current_time()
        idle = await exchange(b"")
        partial = await exchange(b"GET /ok HTTP/1.1\r\nhost:")
        elapsed = trio.current_time() - start
    assert (idle, partial, elapsed) == (b"", b"", 20.0)


async def test_connections_over_the_limit_get_503_at_once(nursery: trio.Nursery) -> None:
    routes = {"/ok": health_route(lambda: {"status": "ok"})}
    with trio.fail_after(10):
        bound: Listening = await nursery.start(serve_http, "127.0.0.1", None, routes)
        held = [await trio.open_tcp_stream("127.0.0.1", bound.port) for _ in range(64)]
        # Each held connection has been served a response, so all 64 handlers are running.
        for stream in held:
            await stream.send_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200 OK\r\n")
        refused = await _exchange(bound.port, b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        for stream in held:
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        again = await _exchange(
            bound.port, b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert refused.endswith(b'{"error":"too many connections"}\n')
    assert again.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_debug_markets_cursor_is_opaque_visible_ascii(
    served: tuple[httpx.AsyncClient, Document],
) -> None:
    client, _ = served
    with trio.fail_after(10):
        spaced = await client.get("/debug/markets", params={"cursor": "a b"})
        opaque = await client.get("/debug/markets", params={"cursor": "=+/"})
    assert (spaced.status_code, spaced.json()) == (
        400,
        {"error": "cursor: expected 1-512 visible ASCII characters, got 'a b'"},
    )
    # Reaches the callable, whose own check (int()) rejects it.
    assert (opaque.status_code, opaque.json()) == (
        400,
        {"error": "invalid literal for int() with base 10: '=+/'"},
    )


async def test_shared_port_needs_the_same_host() -> None:
    with pytest.raises(ConfigError) as raised:
        await serve_endpoints(
            HttpConfig(port=8080, host="127.0.0.1"),
            MetricsConfig(port=8080, host="0.0.0.0"),
            health=lambda: {"status": "ok"},
        )
    assert raised.value.problems == [
        "metrics.host: must equal http.host (127.0.0.1) when both use port 8080"
    ]


async def test_cancellation_closes_the_listener_and_open_connections() -> None:
    routes = {"/ok": health_route(lambda: {"status": "ok"})}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bound: Listening = await nursery.start(serve_http, "127.0.0.1", None, routes)
            idle = await trio.open_tcp_stream("127.0.0.1", bound.port)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        async with idle:
            assert await idle.receive_some(1024) == b""
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", bound.port)


async def test_a_port_in_use_fails_the_start(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        taken: Listening = await nursery.start(serve_http, "127.0.0.1", None, {})
        with pytest.raises(OSError):
            await nursery.start(
                partial(
                    serve_endpoints,
                    HttpConfig(port=taken.port),
                    MetricsConfig(enabled=False),
                    health=lambda: {"status": "ok"},
                )
            )


async def test_a_taken_metrics_port_releases_the_health_port(nursery: trio.Nursery) -> None:
    free = free_port()
    with trio.fail_after(10):
        taken: Listening = await nursery.start(serve_http, "127.0.0.1", None, {})
        with pytest.raises(OSError):
            await serve_endpoints(
                HttpConfig(port=free),
                MetricsConfig(port=taken.port),
                health=lambda: {"status": "ok"},
            )
        again: Listening = await nursery.start(serve_http, "127.0.0.1", free, {})
    assert again.port == free


def test_each_process_exposes_only_its_own_metrics() -> None:
    exported_samples()  # one process imports every module: every metric is registered

    def families(view: CollectorRegistry) -> set[str]:
        return {m.name for m in view.collect() if m.name.startswith("kalshi_")}

    gatherer, dedup = families(gatherer_metrics()), families(dedup_metrics())
    # the deduplicator's: the metrics of kalshi.dedup.metrics, every one
    assert dedup == {
        m._name for m in vars(dedup_metrics_module).values() if isinstance(m, MetricWrapperBase)
    }
    assert {"kalshi_dedup_gatherer_up", "kalshi_export_failures"} <= dedup
    assert gatherer & dedup == set()
    assert gatherer | dedup == {m.name for m in REGISTRY.collect() if m.name.startswith("kalshi_")}
    assert {"kalshi_ws_messages", "kalshi_store_rows_written"} <= gatherer
    text = generate_latest(gatherer_metrics()).decode()
    assert "kalshi_dedup_gatherer_up" not in text and "kalshi_export_failures" not in text
