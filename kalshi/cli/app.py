"""The cyclopts application object and helpers shared by every command."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import trio
from cyclopts import App
from rich.console import Console

from kalshi import __version__
from kalshi.config import load_config
from kalshi.errors import ConfigError

__all__ = [
    "app",
    "console",
    "err_console",
    "fail",
    "load_or_exit",
    "not_implemented",
    "stop_on_signals",
]

app = App(
    name="kalshi",
    help="Record the complete public market data of the Kalshi exchange, tick-perfect.",
    version=__version__,
)
console = Console()
err_console = Console(stderr=True, highlight=False)

T = TypeVar("T")
_log = logging.getLogger("kalshi.cli")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise SystemExit(code)


def load_or_exit(path: Path | None, kind: type[T], **kwargs: Any) -> T:
    """Load a config or exit 2 with one line per problem (no traceback)."""
    try:
        return load_config(path, kind, **kwargs)
    except ConfigError as exc:
        where = f"{path}: " if path else ""
        for problem in exc.problems:
            print(f"config error: {where}{problem}", file=sys.stderr)
        raise SystemExit(2) from None


def not_implemented(command: str) -> NoReturn:
    fail(f"`kalshi {command}` is not implemented yet", code=3)


@asynccontextmanager
async def stop_on_signals(duration: float | None = None) -> AsyncIterator[trio.Nursery]:
    """A nursery that SIGINT or SIGTERM (or ``duration`` seconds) cancels cleanly.

    The services in it flush on cancellation; the command then exits 0.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    _log.warning("%s: flushing and stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            if duration is not None:
                nursery.cancel_scope.deadline = trio.current_time() + duration
            yield nursery
