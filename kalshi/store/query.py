"""Synchronous reads (and ad-hoc statements) for tools, tests and the dedup service.

``connect_db(url)`` returns a :class:`Database`: a thin wrapper over one psycopg
connection whose methods raise :class:`StoreError` / :class:`DatabaseUnavailable` only.
Rows come back as the NamedTuples of :mod:`kalshi.models.rows`; JSONB columns come back
as JSON text in PostgreSQL's normal form (``[[1, 2]]``), so compare them parsed.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from kalshi.errors import StoreError
from kalshi.models.rows import Row
from kalshi.store.connection import connect, translating
from kalshi.store.schema import TABLES, TableSpec

__all__ = ["Database", "connect_db"]

_steps = itertools.count(1)  # server-side cursor names


class Database:
    """One connection (autocommit). Use as a context manager or call :meth:`close`."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The statements inside run as one transaction (committed on exit, rolled back on
        an exception)."""
        with translating(), self._conn.transaction():
            yield

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement with ``%s`` placeholders; return its rows (empty if none)."""
        with translating(), self._conn.cursor() as cur:
            cur.execute(statement.encode(), params or None)
            return list(cur.fetchall()) if cur.description is not None else []

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the affected row count."""
        with translating(), self._conn.cursor() as cur:
            cur.execute(statement.encode(), params or None)
            return cur.rowcount

    def fetch_rows(
        self, table: str, where: str = "", params: Sequence[Any] = (), *, limit: int | None = None
    ) -> list[Row]:
        """Rows of ``table`` as NamedTuples, in key order; ``where`` is an SQL condition."""
        spec, statement = _select(table, where, limit)
        with translating(), self._conn.cursor() as cur:
            cur.execute(statement, params or None)
            return [spec.row_type(*values) for values in cur.fetchall()]

    def fetch_row_steps(
        self,
        table: str,
        where: str,
        params: Sequence[Any],
        step: int,
        *,
        order: Sequence[str] = (),
    ) -> Generator[list[Row], None, None]:
        """The rows of :meth:`fetch_rows` (no limit), ``step`` at a time (each list but the
        last holds ``step`` rows), through a server-side cursor: only one step's rows are
        in this process. ``order``: columns to order by before the key (e.g. ``("ticker",
        "seq")``). The cursor is ``WITH HOLD`` (the autocommit connection's other
        statements, another cursor's steps too, may run between steps); closing the
        iterator closes it."""
        spec, statement = _select(table, where, None, order)
        with translating():
            cur = self._conn.cursor(name=f"steps_{next(_steps)}", withhold=True)
        try:
            with translating():
                cur.execute(statement, params or None)
            while True:
                with translating():
                    batch = cur.fetchmany(step)
                if not batch:
                    return
                yield [spec.row_type(*values) for values in batch]
                if len(batch) < step:
                    return
        finally:
            with translating():
                cur.close()

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}")
        with translating():
            row = self._conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        """Exact row count of every table that exists."""
        with translating():
            present = {
                str(name)
                for (name,) in self._conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                ).fetchall()
            }
        return {table: self.count(table) for table in TABLES if table in present}


def connect_db(url: str) -> Database:
    """Open a :class:`Database`; raises :class:`DatabaseUnavailable` when unreachable."""
    return Database(connect(url, autocommit=True))


def _select(
    table: str, where: str, limit: int | None, order: Sequence[str] = ()
) -> tuple[TableSpec, sql.Composed]:
    """``table``'s spec and the SELECT of its columns (JSON ones as text) by ``order`` then
    key order, ``where`` an SQL condition ("" for none). Raises :class:`StoreError` for an
    unknown table."""
    spec = TABLES.get(table)
    if spec is None:
        raise StoreError(f"unknown table {table!r}")
    columns = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c))
        if c in spec.json_columns
        else sql.Identifier(c)
        for c in spec.columns
    )
    statement = sql.SQL("SELECT {} FROM {}{} ORDER BY {}{}").format(
        columns,
        sql.Identifier(table),
        sql.SQL(f" WHERE {where}") if where else sql.SQL(""),
        sql.SQL(", ".join((*order, *spec.key))),
        sql.SQL(f" LIMIT {int(limit)}") if limit is not None else sql.SQL(""),
    )
    return spec, statement
