"""The one Live refresh task: sample a health source, redraw, sleep, repeat."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import trio
from rich.console import Console
from rich.live import Live

from kalshi.errors import KalshiError
from kalshi.tui.render import render
from kalshi.tui.state import TuiState
from kalshi.tui.summary import summary_line

__all__ = ["HealthSource", "MetricsSource", "run_tui"]

T = TypeVar("T")

log = logging.getLogger("kalshi.tui")

HealthSource = Callable[[], Awaitable[Mapping[str, Any]]] | Callable[[], Mapping[str, Any]]
MetricsSource = Callable[[], Awaitable[str]] | Callable[[], str]


async def _call(function: Callable[[], T | Awaitable[T]]) -> T:
    result = function()
    if inspect.isawaitable(result):
        return await result
    return result


async def _sample(
    state: TuiState, source: HealthSource, metrics: MetricsSource | None = None
) -> None:
    """Take one health document (and metrics text) into ``state``, stamped with
    ``trio.current_time()``. A ``KalshiError`` from a source, or metrics that do not parse,
    become ``state.error`` (shown on screen); anything else propagates."""
    try:
        health = await _call(source)
        text = await _call(metrics) if metrics is not None else None
    except KalshiError as exc:
        state.observe_error(str(exc))
        return
    now = trio.current_time()
    try:
        state.observe(health, now=now, metrics=text)
    except ValueError as exc:  # only the metrics text can be malformed
        state.observe(health, now=now)
        state.observe_error(f"metrics: not Prometheus text ({exc})")


async def run_tui(
    source: HealthSource,
    *,
    refresh: float = 1.0,
    console: Console | None = None,
    metrics: MetricsSource | None = None,
) -> None:
    """Show the live screen for ``source`` every ``refresh`` seconds, until cancelled.

    On a terminal this is a rich ``Live`` screen; otherwise (a pipe, a log file) it prints
    one :func:`summary_line` per refresh. ``metrics`` optionally returns ``/metrics`` text.
    A ``KalshiError`` from a source, or metrics that do not parse, is shown and retried at
    the next refresh; anything else a source raises propagates. A failure to draw costs
    one frame (logged), never the task. Cancellation leaves the last frame on the terminal.
    """
    console = console or Console()
    state = TuiState()
    deadline = trio.current_time()
    if not console.is_terminal:
        while True:
            await _sample(state, source, metrics)
            line = _guarded(summary_line, state)
            console.print(line, markup=False, highlight=False, soft_wrap=True)
            deadline = max(deadline + refresh, trio.current_time())
            await trio.sleep_until(deadline)
    with Live(render(state), console=console, auto_refresh=False) as live:
        while True:
            await _sample(state, source, metrics)
            live.update(_guarded(render, state), refresh=True)
            deadline = max(deadline + refresh, trio.current_time())
            await trio.sleep_until(deadline)


def _guarded(draw: Callable[[TuiState], T], state: TuiState) -> T | str:
    # The screen runs inside the recorder (`kalshi gather --tui`): a drawing bug must cost
    # a frame, never the recording. It is logged with its traceback and shown in place.
    try:
        return draw(state)
    except Exception as exc:
        log.exception("tui: drawing the screen failed")
        return f"error: drawing the screen failed: {exc!r}"
