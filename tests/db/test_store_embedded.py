"""The embedded server: reuse of a running server, resolve_database, clear failures."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kalshi.config import DbConfig
from kalshi.errors import StoreError
from kalshi.store import EmbeddedPostgres, connect_db, resolve_database


def test_a_running_server_is_reused_and_left_running(own_pg: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(own_pg.data_dir)
    assert other.start() == own_pg.url
    other.stop()  # not ours: a no-op
    assert own_pg.running
    with resolve_database(DbConfig(data_dir=str(own_pg.data_dir))) as url:
        assert url == own_pg.url
        with connect_db(url) as db:
            assert db.query("SELECT current_database()") == [("kalshi",)]
    assert own_pg.running


def test_stop_and_start_keep_the_port(own_pg: EmbeddedPostgres) -> None:
    url = own_pg.url
    own_pg.stop()
    assert not own_pg.running
    assert own_pg.start() == url
    assert own_pg.running


def test_configured_url_is_used_as_is() -> None:
    with resolve_database(DbConfig(url="postgresql://u@db.example:5432/k")) as url:
        assert url == "postgresql://u@db.example:5432/k"


def test_non_empty_foreign_directory_is_refused() -> None:
    root = Path(tempfile.mkdtemp(prefix="kalshi-pg-foreign-"))
    (root / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty and not a PostgreSQL data directory"):
        EmbeddedPostgres(root).start()
    assert sorted(os.listdir(root)) == ["notes.txt"]
    shutil.rmtree(root)
