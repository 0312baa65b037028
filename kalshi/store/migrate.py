"""Schema migrations: ``kalshi/sql/NNN_name.sql`` applied in order, recorded in a table.

The files ship inside the package (``importlib.resources``), so an installed wheel migrates
without the source tree; the repository's top-level ``sql/`` is a link to the same folder.

Each file runs in its own transaction together with its record (name, sha256 checksum,
applied_at). Re-running applies nothing and issues no DDL (a role with only DML rights can
start a service on an up-to-date schema); an applied file whose checksum changed raises
:class:`StoreError` before anything else runs. A session advisory lock serialises
concurrent migrators.
"""

from __future__ import annotations

import hashlib
import logging
import re
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from kalshi.errors import StoreError
from kalshi.store.connection import connect, translating

__all__ = [
    "SQL_DIR",
    "Migration",
    "applied_migrations",
    "load_migrations",
    "migrate",
    "storage_mode",
]

log = logging.getLogger("kalshi.store")

SQL_DIR = Path(str(files("kalshi") / "sql"))
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x6B616C736869  # "kalshi"
# Files edited in place after release, with the checksums they had: the edit changed no table,
# so a database that applied the old text is up to date. 001 learned to check that TimescaleDB
# is preloaded before CREATE EXTENSION.
_SUPERSEDED: dict[str, frozenset[str]] = {
    "001_storage_mode.sql": frozenset(
        {"d42bcc3f74536875ff4ded4342f94a0932da419141b33b4aae4b18f49335c594"}
    ),
}
_TIMESCALEDB = """
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
       current_setting('shared_preload_libraries')
"""

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        TEXT PRIMARY KEY,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class Migration(NamedTuple):
    name: str
    checksum: str  # sha256 hex of the file's bytes
    sql: str


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files of ``directory`` (default ``sql/``), in order."""
    directory = SQL_DIR if directory is None else directory
    found: dict[str, Migration] = {}
    numbers: dict[str, str] = {}
    try:
        paths = sorted(directory.iterdir())
    except OSError as exc:
        raise StoreError(f"{directory}: cannot list migrations: {exc.strerror}") from None
    for path in paths:
        match = _NAME.match(path.name)
        if not match:
            continue
        if match[1] in numbers:
            raise StoreError(f"{path.name}: number {match[1]} also used by {numbers[match[1]]}")
        numbers[match[1]] = path.name
        data = path.read_bytes()
        found[path.name] = Migration(path.name, hashlib.sha256(data).hexdigest(), data.decode())
    return [found[name] for name in sorted(found)]


def migrate(url: str, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations; return the names applied (empty when up to date).

    Raises :class:`StoreError` when an applied file changed or a migration fails (that
    migration is rolled back; earlier ones stay), :class:`DatabaseUnavailable` when the
    server cannot be reached.
    """
    migrations = load_migrations(directory)
    applied: list[str] = []
    with connect(url, autocommit=True) as conn, translating():
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            done = _recorded(conn)
            for migration in migrations:
                recorded = done.get(migration.name)
                if recorded in _SUPERSEDED.get(migration.name, ()):
                    continue
                if recorded is not None and recorded != migration.checksum:
                    raise StoreError(
                        f"{migration.name}: file changed after it was applied "
                        f"(checksum {migration.checksum[:12]}, recorded {recorded[:12]}); "
                        "add a new migration instead"
                    )
            if "001_storage_mode.sql" not in done:
                _explain_storage_mode(conn)
            pending = [m for m in migrations if m.name not in done]
            if pending and not _has_table(conn):
                conn.execute(_CREATE_TABLE)
            for migration in pending:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                        (migration.name, migration.checksum),
                    )
                log.info("applied migration %s", migration.name)
                applied.append(migration.name)
            mode = _mode(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    if applied:
        log.info("storage mode: %s", mode)
    return applied


def _has_table(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _recorded(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """``name -> checksum`` of the applied migrations; read only (no DDL), so a role with
    DML rights alone can check an up-to-date schema."""
    if not _has_table(conn):
        return {}
    return dict(conn.execute("SELECT name, checksum FROM schema_migrations").fetchall())


def _explain_storage_mode(conn: psycopg.Connection[Any]) -> None:
    """One log line when TimescaleDB is installed but cannot be used (not preloaded)."""
    row = conn.execute(_TIMESCALEDB).fetchone()
    available, preload = (bool(row[0]), str(row[1])) if row else (False, "")
    if available and "timescaledb" not in re.split(r"[\s,]+", preload):
        log.warning(
            "TimescaleDB is installed but not in shared_preload_libraries: using plain "
            "PostgreSQL. To use it, add shared_preload_libraries = 'timescaledb' to "
            "postgresql.conf, restart the server and migrate a new database"
        )


def applied_migrations(url: str) -> list[tuple[str, str]]:
    """``(name, applied_at ISO text)`` of every recorded migration, in order."""
    with connect(url) as conn, translating():
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        rows = conn.execute(
            "SELECT name, applied_at::text FROM schema_migrations ORDER BY name"
        ).fetchall()
    return [(str(name), str(at)) for name, at in rows]


def storage_mode(url: str) -> str | None:
    """``'timescaledb'``, ``'postgresql'``, or ``None`` before the first migration."""
    with connect(url) as conn, translating():
        return _mode(conn)


def _mode(conn: psycopg.Connection[Any]) -> str | None:
    exists = conn.execute("SELECT to_regclass('kalshi_settings') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT value FROM kalshi_settings WHERE key = 'storage_mode'").fetchone()
    return None if row is None else str(row[0])
