"""The ``kalshi`` command line: one cyclopts app, one module per command."""

from __future__ import annotations

import os
import select
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
    snapshot) stops it with an ``error:`` line and exit 1. A reader that closed our stdout
    (``kalshi replay J --format jsonl | head -1``) is not an error of ours: no message,
    exit 1, the way Python's documentation (signal, "Note on SIGPIPE") and rich's console
    handle a ``BrokenPipeError`` (docs/replay.md, "Output").
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
        if _reader_gone(exc):
            _quiet_exit()
        message = None if debug else expected_failure(exc)
        if message is None:
            raise
        fail(message)


def _reader_gone(exc: BaseException) -> bool:
    """Whether ``exc`` (alone or inside Trio's exception groups) holds the end of a write to
    a stdout whose reader has gone: a ``BrokenPipeError`` while our stdout is such a pipe
    (a ``BrokenPipeError`` of a socket, the database or S3, with stdout still read is an
    error like any other), or the ``SystemExit`` rich's console raises for one
    (``Console.on_broken_pipe``: stdout already pointed at /dev/null, ``BrokenPipeError``
    its context), which a command printing inside its Trio event loop gets back inside an
    exception group (outside tester pbreak9 N2)."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_reader_gone(sub) for sub in exc.exceptions)
    if isinstance(exc, SystemExit):
        return isinstance(exc.__context__, BrokenPipeError)
    if not isinstance(exc, BrokenPipeError):
        return False
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # no stdout at all
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    # A pipe's write end polls POLLERR once its last reader closed (Linux, macOS).
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _quiet_exit() -> None:
    """Exit 1 without a message, stdout pointed at /dev/null first so that the interpreter's
    flush of stdout at exit does not print ``Exception ignored ... BrokenPipeError``."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(1)
