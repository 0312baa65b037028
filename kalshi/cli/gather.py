"""`kalshi gather`."""

from __future__ import annotations

from pathlib import Path

from kalshi.cli.app import app, load_or_exit, not_implemented
from kalshi.config import GathererConfig


@app.command
def gather(*, config: Path | None = None) -> None:
    """Record market data (not implemented yet)."""
    load_or_exit(config, GathererConfig)
    not_implemented("gather")
