"""The ``kalshi`` command line: one cyclopts app, one module per command."""

from __future__ import annotations

from kalshi.cli import commands as _commands  # noqa: F401 - registers the commands
from kalshi.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
