"""Writing one batch: binary COPY into a session staging table, then one
``INSERT ... SELECT ... ON CONFLICT`` into the real table, in one transaction.

Batches of a serial table (:attr:`TableSpec.serial`: trades, markets) are written one at a
time in the order received, and within a batch the first received row of a key is kept
(trades) or the last (markets): a replay stores what the live gatherer stored.

With ``copy_new`` (rows expected to be new: a replay), a batch of a table without JSON
columns (their values travel as text) is first COPYed straight into the real table in a
transaction of its own, about half the database's work; a batch holding a row already
stored (or one the database rejects, or a lock conflict) is rolled back whole and takes
the staged path, which skips or isolates those rows.

Rows the database rejects are isolated by bisection: a failing batch is split in halves
until the single bad rows are found; those go to the dead-letter file and every other
row is written. Blocking; runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from kalshi.errors import StoreError
from kalshi.models.rows import Row
from kalshi.store.connection import is_data_error, translate
from kalshi.store.deadletter import DeadLetters
from kalshi.store.pool import ConnectionPool, PooledConnection
from kalshi.store.schema import TableSpec
from kalshi.store.staging import (
    copy_rows,
    ensure_stage,
    fill_stage,
    insert_closing,
    insert_new,
    stage_name,
    upsert_latest,
)

__all__ = ["WriteResult", "write_batch", "write_counted", "write_rows"]


class WriteResult(NamedTuple):
    inserted: int  # rows new to the table
    duplicates: int  # rows whose key was already stored (markets: not newer, or the same)
    dead: int  # rows rejected and dead-lettered
    updated: int = 0  # markets: stored rows replaced by a newer version


def _insert_sql(spec: TableSpec) -> sql.Composed:
    """The batch's statement from its stage: a gap's copy may close the stored gap, a
    market's newest received version wins, any other row is skipped once its key is
    stored, in key order (:mod:`kalshi.store.staging`)."""
    stage = stage_name(spec)
    if spec.closes is not None:
        return insert_closing(spec, stage)
    if spec.upsert:
        return upsert_latest(spec, stage, newest="_ord")
    return insert_new(spec, stage, in_key_order=True)


def write_batch(
    pooled: PooledConnection, spec: TableSpec, rows: Sequence[Row], *, copy_new: bool = False
) -> int:
    """Write ``rows`` in one transaction; return how many were new. Raises psycopg errors.

    ``copy_new``: try a COPY straight into the table first (see the module docstring)."""
    return write_counted(pooled, spec, rows, copy_new=copy_new)[0]


def write_counted(
    pooled: PooledConnection, spec: TableSpec, rows: Sequence[Row], *, copy_new: bool = False
) -> tuple[int, int]:
    """:func:`write_batch`, returning ``(inserted, updated)``: rows new to the table, and
    stored rows replaced by a newer version (markets) or closed (gaps: their end_ts set);
    the rest of ``rows`` was skipped."""
    conn = pooled.conn
    if copy_new and not spec.upsert and not spec.json_columns and _copy_straight(conn, spec, rows):
        return len(rows), 0
    # created outside the transaction (autocommit), so a batch rolled back keeps its stage
    ensure_stage(conn, spec, pooled.staged, ordered=spec.serial)
    with conn.transaction(), conn.cursor() as cur:
        fill_stage(cur, spec, rows, pooled.staged, ordered=spec.serial)
        cur.execute(_insert_sql(spec))
        if not spec.upsert and spec.closes is None:
            return max(cur.rowcount, 0), 0
        fresh = [new for (new,) in cur.fetchall()]
        return sum(fresh), len(fresh) - sum(fresh)


def _copy_straight(conn: psycopg.Connection[Any], spec: TableSpec, rows: Sequence[Row]) -> bool:
    """COPY ``rows`` into ``spec``'s table in a transaction of their own; True once
    committed, False when anything failed (rolled back: nothing of it is stored)."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            copy_rows(cur, spec, rows, sql.Identifier(spec.name))
    except (psycopg.Error, TypeError, ValueError, OverflowError):
        return False
    return True


def write_rows(
    pool: ConnectionPool,
    spec: TableSpec,
    rows: Sequence[Row],
    dead: DeadLetters,
    *,
    copy_new: bool = False,
) -> WriteResult:
    """Write ``rows``, dead-lettering the ones the database rejects.

    Raises :class:`DatabaseUnavailable` (nothing of this call is committed for the batch
    being tried; retry it) or :class:`StoreError` for errors that are not about the rows.
    """
    try:
        with pool.connection() as pooled:
            inserted, updated = write_counted(pooled, spec, rows, copy_new=copy_new)
    except (psycopg.Error, TypeError, ValueError, OverflowError) as exc:
        if not is_data_error(exc):
            raise translate(exc) from exc
        if len(rows) == 1:
            dead.write(spec, rows[0], _describe(exc))
            return WriteResult(0, 0, 1)
        middle = len(rows) // 2
        left = write_rows(pool, spec, rows[:middle], dead, copy_new=copy_new)
        right = write_rows(pool, spec, rows[middle:], dead, copy_new=copy_new)
        return WriteResult(*(a + b for a, b in zip(left, right, strict=True)))
    except StoreError:
        raise
    return WriteResult(inserted, len(rows) - inserted - updated, 0, updated)


def _describe(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{state}: {text}" if state else f"{type(exc).__name__}: {text}"
