"""`kalshi gather`."""

from __future__ import annotations

from pathlib import Path

from kalshi.cli.app import app, not_implemented


@app.command
def gather(*, config: Path | None = None) -> None:
    """Not implemented yet."""
    not_implemented("gather")
