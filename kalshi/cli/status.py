"""`kalshi status [URL]`: the live screen of a running gatherer (or any service with /health)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import trio
from cyclopts import Parameter
from rich.console import Console

from kalshi.cli.app import POSITIVE, check_http_url, fail, load_or_exit, stop_on_signals
from kalshi.config import GathererConfig
from kalshi.errors import KalshiError
from kalshi.tui import TuiState, open_remote, render, run_tui

DEFAULT_URL = "http://127.0.0.1:8080"


def status(
    url: Annotated[str | None, Parameter(help=f"Its HTTP address [{DEFAULT_URL}].")] = None,
    *,
    metrics_url: Annotated[
        str | None, Parameter(help="Its metrics server, e.g. http://127.0.0.1:9090.")
    ] = None,
    once: Annotated[bool, Parameter(help="Print one frame as plain text and exit.")] = False,
    refresh: Annotated[
        float, Parameter(help="Seconds between refreshes.", validator=POSITIVE)
    ] = 1.0,
    config: Annotated[
        Path | None, Parameter(help="Take both addresses from this gatherer config.")
    ] = None,
) -> None:
    """Attach to a running gatherer's /health (and /metrics) and show the live screen."""
    if config is not None:
        cfg = load_or_exit(config, GathererConfig)
        if url is None and cfg.http.port:
            url = f"http://{cfg.http.host}:{cfg.http.port}"
        if metrics_url is None and cfg.metrics.enabled and cfg.metrics.port:
            metrics_url = f"http://{cfg.metrics.host}:{cfg.metrics.port}"
    for name, value in (("URL", url), ("--metrics-url", metrics_url)):
        if value is not None:
            check_http_url(name, value)
    with contextlib.suppress(KeyboardInterrupt):
        error = trio.run(_status, url or DEFAULT_URL, metrics_url, once, refresh)
        if error is not None:
            fail(error)


async def _status(url: str, metrics_url: str | None, once: bool, refresh: float) -> str | None:
    """Runs the screen; returns the error that stopped it before the first frame."""
    async with open_remote(url, metrics=metrics_url) as remote:
        state = TuiState()
        got: dict[str, Any] = {}

        async def fetch(name: str, call: Callable[[], Awaitable[object]]) -> None:
            try:
                got[name] = await call()
            except (KalshiError, ValueError) as exc:
                got[name] = exc

        # /health and /metrics at once: a slow or unreachable metrics server delays the
        # frame by at most one request timeout and never hides /health (outside tester F6).
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, "health", remote.health)
            if metrics_url:
                nursery.start_soon(fetch, "metrics", remote.metrics)
        health = got["health"]
        if isinstance(health, Exception):
            return str(health)
        metrics = got.get("metrics")
        problem = f"metrics: {metrics}" if isinstance(metrics, Exception) else None
        try:
            state.observe(health, now=trio.current_time(), metrics=metrics if not problem else None)
        except ValueError as exc:  # not Prometheus text
            problem = f"metrics: {exc}"
            state.observe(health, now=trio.current_time())
        if problem is not None:
            state.observe_error(problem)
        if once:
            plain = Console(color_system=None, highlight=False, width=_width())
            plain.print(render(state))
            return None
        source = remote.metrics if metrics_url else None
        # SIGINT or SIGTERM (a supervisor, `timeout`) stops the screen: exit 0 (tester F1)
        async with stop_on_signals() as nursery:
            nursery.start_soon(partial(run_tui, remote.health, refresh=refresh, metrics=source))
    return None


def _width() -> int | None:
    # Piped output gets a wide page rather than rich's 80 columns.
    return None if sys.stdout.isatty() else 120
