"""Migrations against a real PostgreSQL: from empty, idempotent, changed files, schema shape."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
import trio

from kalshi.config import StoreConfig
from kalshi.dedup.production import PRODUCTION_INDEXES, Production
from kalshi.dedup.tables import KEYED
from kalshi.errors import DatabaseUnavailable, StoreError
from kalshi.models.rows import TABLE_COLUMNS, TradeRow
from kalshi.store import EmbeddedPostgres, connect_db, migrate, open_store, storage_mode
from kalshi.store.migrate import SQL_DIR, applied_migrations
from kalshi.store.schema import TABLES

MIGRATIONS = [
    "001_storage_mode.sql",
    "002_tables.sql",
    "003_time_series.sql",
    "004_dedup.sql",
    "005_watermark.sql",
    "006_gap_sid.sql",
    "007_received_index.sql",
    "008_export_windows.sql",
    "009_commit_order.sql",
    "010_export_targets.sql",
    "011_production_indexes.sql",
    "012_checkpoint_last_ts.sql",
    "013_occurrence.sql",
]
_PG_TYPES = {"int8": "bigint", "int4": "integer", "text": "text", "bool": "boolean"}


def test_migrate_from_empty_creates_every_table(empty_db_url: str) -> None:
    assert storage_mode(empty_db_url) is None
    assert migrate(empty_db_url) == MIGRATIONS
    with connect_db(empty_db_url) as db:
        assert db.counts() == dict.fromkeys(TABLE_COLUMNS, 0)
        recorded = db.query("SELECT name, checksum FROM schema_migrations ORDER BY name")
    expected = [(n, hashlib.sha256((SQL_DIR / n).read_bytes()).hexdigest()) for n in MIGRATIONS]
    assert recorded == expected
    # The embedded server never preloads timescaledb, so this is always plain mode.
    assert storage_mode(empty_db_url) == "postgresql"


def test_rerun_is_a_noop(empty_db_url: str) -> None:
    migrate(empty_db_url)
    before = applied_migrations(empty_db_url)
    assert migrate(empty_db_url) == []
    assert applied_migrations(empty_db_url) == before
    assert [name for name, _ in before] == MIGRATIONS


def test_changed_applied_file_is_an_error(empty_db_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    shutil.copytree(SQL_DIR, directory)
    migrate(empty_db_url, directory)
    with (directory / "002_tables.sql").open("a") as handle:
        handle.write("\n-- edited after the fact\n")
    (directory / "999_later.sql").write_text("CREATE TABLE later (x INT);\n")
    with pytest.raises(StoreError, match=r"^002_tables\.sql: file changed after it was applied"):
        migrate(empty_db_url, directory)
    # Nothing after the check ran.
    assert [name for name, _ in applied_migrations(empty_db_url)] == MIGRATIONS


def test_new_migration_applies_alone(empty_db_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    shutil.copytree(SQL_DIR, directory)
    migrate(empty_db_url, directory)
    (directory / "999_later.sql").write_text("CREATE TABLE later (x INT);\n")
    assert migrate(empty_db_url, directory) == ["999_later.sql"]
    assert migrate(empty_db_url, directory) == []


def _indexes(url: str) -> set[str]:
    with connect_db(url) as db:
        rows = db.query("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    return {name for (name,) in rows}


def test_production_indexes_only_where_a_deduplicator_merges(
    empty_db_url: str, db_url: str, tmp_path: Path
) -> None:
    # A gatherer's database has no index on (ticker, seq): its deltas carry seq, and each
    # paid for the index the export reads only on production (issue 20: 3.4 of 8.2 µs of
    # the server's CPU a row). The merging deduplicator creates them on production.
    assert not _indexes(db_url) & set(PRODUCTION_INDEXES)
    Production(db_url, exclusive=True).close()
    assert _indexes(db_url) >= set(PRODUCTION_INDEXES)
    Production(db_url, exclusive=True).close()  # present: nothing to do
    # A production database merged into before 011 keeps them through the migration.
    directory = tmp_path / "sql"
    shutil.copytree(SQL_DIR, directory)
    (directory / "011_production_indexes.sql").unlink()
    migrate(empty_db_url, directory)
    with connect_db(empty_db_url) as db:
        db.execute(
            "INSERT INTO dedup_cursors (gatherer_id, table_name, position, horizon, updated_at)"
            " VALUES ('g', 'trades', '[]', 0, 0)"
        )
    assert migrate(empty_db_url) == ["011_production_indexes.sql"]
    assert _indexes(empty_db_url) >= set(PRODUCTION_INDEXES)


def test_failing_migration_rolls_back(empty_db_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    shutil.copytree(SQL_DIR, directory)
    (directory / "999_bad.sql").write_text("CREATE TABLE half (x INT);\nSELECT nonsense;\n")
    with pytest.raises(StoreError, match="nonsense"):
        migrate(empty_db_url, directory)
    with connect_db(empty_db_url) as db:
        assert db.query("SELECT to_regclass('half') IS NULL") == [(True,)]
    assert [name for name, _ in applied_migrations(empty_db_url)] == MIGRATIONS


def test_tables_match_the_row_tuples(db_url: str) -> None:
    with connect_db(db_url) as db:
        for name, spec in TABLES.items():
            columns = db.query(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position",
                (name,),
            )
            expected = [
                (c, _PG_TYPES.get(t, t)) for c, t in zip(spec.columns, spec.types, strict=True)
            ]
            # then the writing transaction's id, filled by the database (009_commit_order.sql),
            # before the columns added later (013_occurrence.sql: occurrence)
            later = 1 if name in ("tickers", "market_lifecycle") else 0
            at = len(columns) - 1 - later
            assert columns[at] == ("ingest_xid", "bigint"), name
            assert [*columns[:at], *columns[at + 1 :]] == expected, name
            assert tuple(c for c, _ in [*columns[:at], *columns[at + 1 :]]) == TABLE_COLUMNS[name]


def test_trades_1m_ohlcv(db_url: str) -> None:
    minute = 1_732_486_440_000_000  # a minute boundary, µs
    with connect_db(db_url) as db:
        for i, (offset, price, size) in enumerate(
            [
                (1, 42000, 100),
                (5_000_000, 45000, 250),
                (30_000_000, 40000, 1),
                (59_999_999, 43000, 1000),
                (60_000_000, 50000, 7),
            ]
        ):
            db.execute(
                "INSERT INTO trades VALUES "
                "(%s, %s, 'g', 'MKT', %s, %s, %s, true, false, 'ws', 1, %s, NULL)",
                (minute + offset, minute + offset, f"t{i}", price, size, i + 1),
            )
        rows = db.query("SELECT * FROM trades_1m ORDER BY ticker, bucket")
    assert [tuple(int(v) if not isinstance(v, str) else v for v in r) for r in rows] == [
        ("MKT", minute, 42000, 45000, 40000, 43000, 1351, 4),
        ("MKT", minute + 60_000_000, 50000, 50000, 50000, 50000, 7, 1),
    ]


def test_unreachable_database_is_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable):
        migrate("postgresql://postgres@127.0.0.1:1/kalshi")


async def test_role_with_dml_rights_only_migrates_and_writes(
    db_url: str, pg_server: EmbeddedPostgres, cfg: StoreConfig
) -> None:
    # Issue 18 item 10: `migrate` on an up-to-date schema issues no DDL, so a role that may
    # only read and write rows (no CREATE on the schema) starts a gatherer.
    role = f"dml_only_{os.getpid()}"
    database = db_url.rsplit("/", 1)[1]
    with connect_db(db_url) as db:
        db.execute(f'CREATE ROLE "{role}" LOGIN')
        db.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        db.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        db.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
        )
        db.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    role_url = f"postgresql://{role}@127.0.0.1:{pg_server.port}/{database}"
    try:
        with connect_db(role_url) as db, pytest.raises(StoreError, match="permission denied"):
            db.execute("CREATE TABLE proof_of_no_ddl (x INT)")
        assert migrate(role_url) == []
        row = TradeRow(
            exchange_ts=1,
            received_at=2,
            gatherer_id="g-1",
            ticker="MKT",
            trade_id="00000000-0000-4000-8000-000000000001",
            price=42_000,
            size=100,
            taker_side=True,
            is_block_trade=False,
            source="ws",
            conn_id=7,
            frame_no=1,
            seq=1,
        )
        with trio.fail_after(30):
            async with open_store(role_url, cfg) as store, store.sender("trades") as send:
                await send.send(row)
        with connect_db(db_url) as db:
            assert db.fetch_rows("trades") == [row]
    finally:
        with connect_db(db_url) as db:
            db.execute(f'DROP OWNED BY "{role}"')
        with connect_db(pg_server.url_for("postgres")) as db:
            db.execute(f'DROP ROLE "{role}"')


def test_every_key_the_code_uses_is_a_key_of_the_database(db_url: str) -> None:
    # The writers' ON CONFLICT targets and the deduplicator's keyset orders name exactly
    # the unique keys the migrations create (docs/contracts.md, "Identity").
    with connect_db(db_url) as db:
        found = db.query(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND (i.indisunique OR i.indisprimary)"
        )
    unique: dict[str, set[str]] = {}
    for table, definition in found:
        unique.setdefault(table, set()).add(_columns(definition.split(" USING btree ")[1]))
    for name, spec in TABLES.items():
        assert _columns(spec.conflict) in unique[name], name
    for table in KEYED.values():
        # markets are upserted by their identity and read in update order
        key = table.identity if table.upsert else table.key
        assert _columns(", ".join(key)) in unique[table.name], table.name


def _columns(text: str) -> str:
    """A key's columns and expressions without casts, parentheses or spaces."""
    return re.sub(r"::\w+|[() ]", "", text)
