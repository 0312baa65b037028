"""The embedded server: reuse of a running server, resolve_database, clear failures."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import trio

from kalshi.config import DbConfig
from kalshi.errors import StoreError
from kalshi.store import EmbeddedPostgres, connect_db, migrate, open_store, resolve_database
from tests.db.conftest import store_config
from tests.db.test_store_writer import send_all, trade


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


async def test_a_restart_by_another_process_keeps_the_url_and_the_spool_drains(
    own_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    """`kalshi db down` then `db up` (each a new process, so a new object): same port.

    The gatherer that spooled while the server was down drains into the same database
    (the spool names it by URL; a new port would make it refuse)."""
    url = own_pg.url
    migrate(url)
    cfg = store_config(tmp_path, batch_size=100, flush_interval=3600, grace=5)
    EmbeddedPostgres(own_pg.data_dir).stop_server()  # `kalshi db down`
    rows = [trade(i) for i in range(250)]
    with trio.fail_after(30):
        async with open_store(url, cfg) as store:
            await send_all(store, "trades", rows)
        stats = store.stats().tables["trades"]
    assert (stats.spool_rows, stats.spool_files) == (250, 3)
    again = EmbeddedPostgres(own_pg.data_dir)  # `kalshi db up`
    assert again.start() == url
    with trio.fail_after(30):
        async with open_store(url, cfg) as store:
            await store.drain()
        assert store.stats().tables["trades"].spool_rows == 0
    with connect_db(url) as db:
        assert db.fetch_rows("trades") == sorted(rows)


def test_a_kept_port_held_by_another_process_is_a_clear_error(
    own_pg: EmbeddedPostgres,
) -> None:
    port = own_pg.port
    own_pg.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(StoreError) as raised:
            EmbeddedPostgres(own_pg.data_dir).start()
    assert str(raised.value) == (
        f"embedded PostgreSQL cannot start on port {port} (kept in "
        f"{own_pg.data_dir / 'kalshi.conf'} so the URL never changes): Address already in "
        f"use; stop the process using 127.0.0.1:{port}, or delete the port line to choose "
        "a new port (a gatherer's spool for the old URL is then refused)"
    )
    assert EmbeddedPostgres(own_pg.data_dir).start() == own_pg.url


def test_a_server_started_before_ports_were_kept_keeps_its_port_once_reused(
    own_pg: EmbeddedPostgres,
) -> None:
    conf = own_pg.data_dir / "kalshi.conf"
    older = [line for line in conf.read_text().splitlines() if not line.startswith("port =")]
    conf.write_text("".join(f"{line}\n" for line in older))
    assert EmbeddedPostgres(own_pg.data_dir).start() == own_pg.url  # e.g. the gatherer's start
    assert conf.read_text().splitlines() == [*older, f"port = {own_pg.port}"]
    EmbeddedPostgres(own_pg.data_dir).stop_server()  # `kalshi db down`
    assert EmbeddedPostgres(own_pg.data_dir).start() == own_pg.url  # `kalshi db up`


def test_the_server_runs_with_the_ingest_settings_and_given_settings_override_them() -> None:
    """Checkpoints by time (max_wal_size 8GB, checkpoint_timeout 15min), commits
    acknowledged only once flushed (synchronous_commit on); ``settings`` win."""
    root = Path(tempfile.mkdtemp(prefix="kalshi-pg-ingest-"))
    root.chmod(0o755)  # the server may run as an unprivileged user
    shown = "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s) ORDER BY name"
    names = ["checkpoint_timeout", "max_wal_size", "min_wal_size", "synchronous_commit"]
    try:
        with EmbeddedPostgres(root / "pg") as server, connect_db(server.url) as db:
            assert db.query(shown, (names,)) == [
                ("checkpoint_timeout", "900", "s"),
                ("max_wal_size", "8192", "MB"),
                ("min_wal_size", "1024", "MB"),
                ("synchronous_commit", "on", None),
            ]
        with (
            EmbeddedPostgres(root / "pg", settings={"max_wal_size": "'2GB'"}) as server,
            connect_db(server.url) as db,
        ):
            assert db.query(shown, (["max_wal_size"],)) == [("max_wal_size", "2048", "MB")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
