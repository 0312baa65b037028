"""`kalshi db ...`."""

from __future__ import annotations

from pathlib import Path

from cyclopts import App

from kalshi.cli.app import app, not_implemented

db_app = App(name="db", help="Manage the database: up, status, migrate, reset.")
app.command(db_app)


@db_app.command
def migrate(*, config: Path | None = None) -> None:
    """Apply pending migrations."""
    not_implemented("db migrate")
