"""`kalshi db up|down|status|migrate|reset`: the database of a gatherer.

Without ``timescaledb.url`` (the default) these manage the embedded PostgreSQL under
``timescaledb.data_dir`` (default ``.kalshi/pg``): ``up`` starts it and leaves it running,
``down`` stops it, the others start it for the duration of the command if it is not
already running.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter

from kalshi.cli.app import console, fail, load_or_exit, redact_url
from kalshi.config import GathererConfig
from kalshi.errors import StoreError
from kalshi.store import EmbeddedPostgres, connect_db, migrate, resolve_database, storage_mode
from kalshi.store.migrate import applied_migrations, load_migrations

db_app = App(name="db", help="Manage the database: up, down, status, migrate, reset.")

ConfigOption = Annotated[Path | None, Parameter(help="Gatherer config (YAML).")]
UrlOption = Annotated[
    str | None, Parameter(help="PostgreSQL URL; overrides timescaledb.url (empty: embedded).")
]


def _config(config: Path | None, url: str | None) -> GathererConfig:
    overrides = {"timescaledb.url": url} if url is not None else None
    return load_or_exit(config, GathererConfig, overrides=overrides)


def _say(text: str) -> None:
    console.print(text, soft_wrap=True, markup=False, highlight=False)


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except StoreError as exc:
        fail(str(exc))


@db_app.command
def up(*, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Start the embedded PostgreSQL (left running), apply migrations, print the URL."""
    cfg = _config(config, url)
    with _store_errors():
        if cfg.timescaledb.url:
            target = cfg.timescaledb.url
        else:
            server = EmbeddedPostgres(cfg.timescaledb.data_dir)
            target = server.start()  # not stopped: `up` leaves it running
        applied = migrate(target)
        mode = storage_mode(target)
    for name in applied:
        _say(f"applied {name}")
    _say(f"storage mode: {mode}")
    print(redact_url(target) if cfg.timescaledb.url else target)


@db_app.command
def down(*, config: ConfigOption = None) -> None:
    """Stop the embedded PostgreSQL (fast shutdown)."""
    cfg = _config(config, None)
    with _store_errors():
        server = EmbeddedPostgres(cfg.timescaledb.data_dir)
        if not (Path(cfg.timescaledb.data_dir) / "PG_VERSION").exists() or not server.running:
            _say("embedded PostgreSQL is not running")
            return
        server.stop_server()
    _say("embedded PostgreSQL stopped")


@db_app.command
def status(*, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Show the server, the migrations, the storage mode and row counts."""
    cfg = _config(config, url)
    with _store_errors():
        if cfg.timescaledb.url:
            _say(f"server: {redact_url(cfg.timescaledb.url)}")
            target = cfg.timescaledb.url
        else:
            data_dir = Path(cfg.timescaledb.data_dir)
            server = EmbeddedPostgres(data_dir)
            if not (data_dir / "PG_VERSION").exists() or not server.running:
                _say(f"server: embedded, stopped ({data_dir}); run `kalshi db up`")
                return
            target = server.start()  # reuses the running server
            _say(f"server: embedded, running on port {server.port} ({data_dir})")
            _say(f"url: {target}")
        applied = dict(applied_migrations(target))
        pending = [m.name for m in load_migrations() if m.name not in applied]
        _say(f"storage mode: {storage_mode(target) or 'not migrated'}")
        _say(f"migrations: {len(applied)} applied, {len(pending)} pending")
        for name, at in applied.items():
            _say(f"  {name}  applied {at}")
        for name in pending:
            _say(f"  {name}  pending")
        with connect_db(target) as db:
            counts = db.counts()
        for table, count in counts.items():
            _say(f"  {table:<20} {count:>12,} rows")


def migrate_(*, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Apply pending migrations."""
    cfg = _config(config, url)
    with _store_errors(), resolve_database(cfg.timescaledb) as target:
        applied = migrate(target)
        mode = storage_mode(target)
    for name in applied:
        _say(f"applied {name}")
    if not applied:
        _say("schema up to date")
    _say(f"storage mode: {mode}")


db_app.command(migrate_, name="migrate")


@db_app.command
def reset(
    *,
    config: ConfigOption = None,
    url: UrlOption = None,
    yes: Annotated[
        bool, Parameter(help="Drop without asking (for scripts: no terminal).", negative=())
    ] = False,
) -> None:
    """Drop every table and re-apply the migrations (asks first unless --yes)."""
    cfg = _config(config, url)
    with _store_errors(), resolve_database(cfg.timescaledb) as target:
        shown = redact_url(target)
        if not yes:
            try:
                answer = console.input(f"Drop all data in {shown}? [y/N] ", markup=False)
            except EOFError:
                fail("reset cancelled: no answer (pass --yes to skip the question)")
            if answer.strip().lower() not in ("y", "yes"):
                fail("reset cancelled", code=1)
        with connect_db(target) as db:
            db.execute("DROP EXTENSION IF EXISTS timescaledb CASCADE")
            db.execute("DROP SCHEMA public CASCADE")
            db.execute("CREATE SCHEMA public")
        applied = migrate(target)
        mode = storage_mode(target)
    _say(f"reset {shown}: applied {len(applied)} migrations, storage mode: {mode}")
