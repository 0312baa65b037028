"""The ``kalshi`` command line: one cyclopts app, one module per command."""

from __future__ import annotations

import signal
import sys

from kalshi.cli import commands as _commands  # noqa: F401 - registers the commands
from kalshi.cli.app import (
    Interrupted,
    Stopped,
    UsageError,
    app,
    err_console,
    expected_failure,
    fail,
    stop_early,
)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point.

    An expected failure (a :class:`~kalshi.errors.KalshiError` or an ``OSError``, alone or
    inside Trio's exception groups) prints one ``error:`` line and exits 1; a
    :class:`~kalshi.cli.app.UsageError` prints one ``error:`` line and exits 2; ``--debug``
    (anywhere on the command line) shows the traceback instead. SIGTERM before a
    command's loop listens for it (its start) stops it with a line and exit 0, as later;
    SIGINT or SIGTERM during a one-shot command's work (a dedup pass, an export, a REST
    snapshot) stops it with an ``error:`` line and exit 1.
    """
    stop_early()
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except Stopped as exc:
        name = signal.Signals(exc.args[0]).name
        err_console.print(f"{name}: stopped before the command's work began", soft_wrap=True)
        raise SystemExit(0) from None
    except Interrupted as exc:
        name = signal.Signals(exc.args[0]).name
        fail(f"{name}: stopped before the command's work was done")
    except UsageError as exc:
        fail(str(exc), code=2)
    except (Exception, BaseExceptionGroup) as exc:
        message = None if debug else expected_failure(exc)
        if message is None:
            raise
        fail(message)
