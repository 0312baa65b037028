"""Storage: schema migrations, the embedded PostgreSQL, the batch writers, and reads.

The only package that imports psycopg; its errors leave as :class:`kalshi.errors.StoreError`
(:class:`~kalshi.errors.DatabaseUnavailable` when the server cannot be reached). The
stages after it (the deduplicator, the export, replay) use this face: :class:`Session`
(sessions with timeouts, transactions, COPY, the staged inserts), :class:`Database`
(reads) and :data:`TABLES` (each table's columns, types and key).
"""

from kalshi.store.embedded import EmbeddedPostgres, resolve_database
from kalshi.store.migrate import migrate, storage_mode
from kalshi.store.process import drain_store, serve_batches, store_counts
from kalshi.store.query import Database, connect_db
from kalshi.store.schema import TABLES, TableSpec
from kalshi.store.session import Session
from kalshi.store.writer import Store, StoreStats, TableStats, open_store

__all__ = [
    "TABLES",
    "Database",
    "EmbeddedPostgres",
    "Session",
    "Store",
    "StoreStats",
    "TableSpec",
    "TableStats",
    "connect_db",
    "drain_store",
    "migrate",
    "open_store",
    "resolve_database",
    "serve_batches",
    "storage_mode",
    "store_counts",
]
