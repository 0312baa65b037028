"""The HTTP side of a service: ``/health`` (+ ``/debug/markets``) and ``/metrics`` from config."""

from __future__ import annotations

import trio
from attrs import frozen
from prometheus_client import REGISTRY, CollectorRegistry

from kalshi.config import HttpConfig, MetricsConfig
from kalshi.errors import ConfigError
from kalshi.http.routes import (
    DebugMarkets,
    Health,
    debug_markets_route,
    health_route,
    metrics_route,
)
from kalshi.http.server import (
    Handler,
    Listening,
    listen,
    open_http_listeners,
    serve_http_listeners,
)

__all__ = ["Endpoints", "Port", "check_ports", "endpoint_ports", "serve_endpoints"]


@frozen
class Endpoints:
    """Where the endpoints listen; ``None`` for a disabled one."""

    health: Listening | None
    metrics: Listening | None


Port = tuple[str, int, str]
"""A port a command will listen on: ``(host, port, what)``, ``what`` naming the server
in the error (``simulator``, ``/health (http.port)``); port 0 (any free one) is never taken."""


def endpoint_ports(http: HttpConfig, metrics: MetricsConfig) -> list[Port]:
    """The ports :func:`serve_endpoints` will bind for this config (those enabled; equal
    ports once)."""
    metrics_port = metrics.port if metrics.enabled else 0
    wanted = [(http.host, http.port, "/health (http.port)")] if http.port else []
    if metrics_port and metrics_port != http.port:
        wanted.append((metrics.host, metrics_port, "/metrics (metrics.port)"))
    return wanted


async def check_ports(*wanted: Port) -> None:
    """Bind each ``(host, port, what)`` (port 0 skipped) and let it go: a long-running
    command's first step (``kalshi gather``, ``dedup``, ``sim``, ``replay --serve``:
    :func:`kalshi.cli.app.ports_first`), so a taken port fails before any work that writes
    (an embedded PostgreSQL, migrations, the previous run's outage rows, a key or truth
    file). Raises ``OSError`` naming ``what``, the host and the port
    (:func:`~kalshi.http.server.listen`); the service binds them again when it starts."""
    for host, port, what in wanted:
        if port:
            for listener in await listen(host, port, what):
                listener.socket.close()


async def serve_endpoints(
    http: HttpConfig,
    metrics: MetricsConfig,
    *,
    health: Health,
    debug_markets: DebugMarkets | None = None,
    registry: CollectorRegistry = REGISTRY,
    task_status: trio.TaskStatus[Endpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a service's endpoints as configured, until cancelled.

    ``http.port`` serves ``/health`` and, when ``http.debug_endpoints`` and
    ``debug_markets`` is given, ``/debug/markets``; ``metrics.port`` serves ``/metrics``.
    A port of 0 (or ``metrics.enabled: false``) disables that server; equal ports share one
    server (then the hosts must be equal too). Starts with the :class:`Endpoints` actually
    bound. Raises :class:`ConfigError` for conflicting hosts and ``OSError`` when a port
    cannot be bound. With both disabled it starts with ``Endpoints(None, None)`` and returns.
    """
    routes: dict[str, Handler] = {}
    if http.port:
        routes["/health"] = health_route(health)
        if http.debug_endpoints and debug_markets is not None:
            routes["/debug/markets"] = debug_markets_route(debug_markets)
    metrics_routes = {"/metrics": metrics_route(registry)} if metrics.enabled else {}
    metrics_port = metrics.port if metrics.enabled else 0
    shared = bool(http.port) and http.port == metrics_port
    if shared and http.host != metrics.host:
        raise ConfigError(
            f"metrics.host: must equal http.host ({http.host}) when both use port {http.port}"
        )
    # Bind both before starting anything, so a taken port is a plain OSError to the caller.
    health_listeners = (
        await open_http_listeners(http.host, http.port, "/health (http.port)") if http.port else []
    )
    try:
        metrics_listeners = (
            await open_http_listeners(metrics.host, metrics_port, "/metrics (metrics.port)")
            if metrics_port and not shared
            else []
        )
    except BaseException:
        for listener in health_listeners:
            listener.socket.close()  # synchronous: also right when cancelled
        raise
    if shared:
        routes.update(metrics_routes)
    async with trio.open_nursery() as nursery:
        bound_health = bound_metrics = None
        if health_listeners:
            bound_health = await nursery.start(serve_http_listeners, health_listeners, routes)
        if metrics_listeners:
            bound_metrics = await nursery.start(
                serve_http_listeners, metrics_listeners, metrics_routes
            )
        task_status.started(Endpoints(bound_health, bound_health if shared else bound_metrics))
