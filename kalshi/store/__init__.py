"""Storage: schema migrations, the embedded PostgreSQL, the batch writers, and reads.

The only package that imports psycopg; its errors leave as :class:`kalshi.errors.StoreError`
(:class:`~kalshi.errors.DatabaseUnavailable` when the server cannot be reached).
"""

from kalshi.store.embedded import EmbeddedPostgres, resolve_database
from kalshi.store.migrate import migrate, storage_mode
from kalshi.store.query import Database, connect_db
from kalshi.store.writer import Store, StoreStats, TableStats, open_store

__all__ = [
    "Database",
    "EmbeddedPostgres",
    "Store",
    "StoreStats",
    "TableStats",
    "connect_db",
    "migrate",
    "open_store",
    "resolve_database",
    "storage_mode",
]
