"""The ``kalshi`` command line: one cyclopts app, one module per command."""

from __future__ import annotations

import sys

from kalshi.cli import commands as _commands  # noqa: F401 - registers the commands
from kalshi.cli.app import UsageError, app, expected_failure, fail

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point.

    An expected failure (a :class:`~kalshi.errors.KalshiError` or an ``OSError``, alone or
    inside Trio's exception groups) prints one ``error:`` line and exits 1; a
    :class:`~kalshi.cli.app.UsageError` prints one ``error:`` line and exits 2; ``--debug``
    (anywhere on the command line) shows the traceback instead.
    """
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except UsageError as exc:
        fail(str(exc), code=2)
    except (Exception, BaseExceptionGroup) as exc:
        message = None if debug else expected_failure(exc)
        if message is None:
            raise
        fail(message)
