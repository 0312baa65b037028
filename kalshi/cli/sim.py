"""`kalshi sim`."""

from __future__ import annotations

from pathlib import Path

from kalshi.cli.app import app, not_implemented


@app.command
def sim(*, config: Path | None = None) -> None:
    """Not implemented yet."""
    not_implemented("sim")
