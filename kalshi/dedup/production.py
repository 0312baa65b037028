"""Writes to the production database: rows, cursors and checkpoints in one transaction.

Blocking (sync psycopg); the service calls it through ``trio.to_thread.run_sync``. Each
``commit_*`` method is one transaction: the rows it inserts and the cursors or checkpoints
that cover them are committed together or not at all, so a crash (even ``kill -9``) between
two calls neither skips nor repeats anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg import sql

from kalshi.book import OrderBook
from kalshi.clock import WallClock, system_wall_us
from kalshi.dedup.merge import Checkpoint
from kalshi.dedup.tables import DIGEST_BUCKET_US, KeyedTable, digest_sql
from kalshi.errors import StoreError
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow
from kalshi.store.connection import connect, translating
from kalshi.store.schema import TABLES, TableSpec
from kalshi.store.staging import (
    copy_rows,
    ensure_stage,
    source_columns,
    stage_name,
    target_columns,
)

__all__ = ["Counts", "Cursor", "Production"]

_STAGE = "_dedup_"  # prefix of production's staging tables


class Cursor(NamedTuple):
    position: tuple[Any, ...] | None  # key of the last merged row
    horizon: int  # gatherer time merged up to, µs


class Counts(NamedTuple):
    inserted: int
    duplicates: int


def _levels(book: dict[int, int]) -> str:
    return json.dumps(sorted(book.items()))


def _stage(spec: TableSpec) -> sql.Identifier:
    return stage_name(spec, _STAGE)


def _keyed_insert(table: KeyedTable) -> sql.Composed:
    spec = TABLES[table.name]
    targets = target_columns(spec)
    stage = _stage(spec)
    name = sql.Identifier(spec.name)
    if table.upsert:
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in spec.columns[1:]
        )
        return sql.SQL(
            "INSERT INTO {name} ({targets}) SELECT DISTINCT ON (s.ticker) {sources} "
            "FROM {stage} s ORDER BY s.ticker, s.updated_at DESC "
            "ON CONFLICT (ticker) DO UPDATE SET {updates} "
            "WHERE {name}.updated_at <= EXCLUDED.updated_at"
        ).format(
            name=name,
            targets=targets,
            sources=source_columns(spec, "s"),
            stage=stage,
            updates=updates,
        )
    if table.identity == table.key:
        return sql.SQL(
            "INSERT INTO {name} ({targets}) SELECT {sources} FROM {stage} s ON CONFLICT DO NOTHING"
        ).format(name=name, targets=targets, sources=source_columns(spec, "s"), stage=stage)
    mine = source_columns(spec, "s", table.identity)
    theirs = source_columns(spec, "t", table.identity)
    return sql.SQL(
        "INSERT INTO {name} ({targets}) SELECT DISTINCT ON ({distinct}) {sources} "
        "FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {name} t WHERE t.ticker = s.ticker "
        "AND t.{time} = s.{time} AND ({theirs}) IS NOT DISTINCT FROM ({mine})) "
        "ORDER BY {distinct} ON CONFLICT DO NOTHING"
    ).format(
        name=name,
        targets=targets,
        distinct=mine,
        sources=source_columns(spec, "s"),
        stage=stage,
        time=sql.Identifier(table.key[0]),  # the exchange's time of the event
        theirs=theirs,
        mine=mine,
    )


MERGE_LOCK = 0x6B616C73686464  # "kalshdd": the one deduplicator of a production database


class Production:
    """One connection to the production database (call from a worker thread).

    ``exclusive``: take the session advisory lock :data:`MERGE_LOCK` first, so a second
    deduplicator on the same production database is refused (its books would interleave
    with ours): raises :class:`StoreError` naming the backend that holds it.
    """

    def __init__(
        self, url: str, *, exclusive: bool = False, wall_us: WallClock = system_wall_us
    ) -> None:
        self._conn: psycopg.Connection[Any] = connect(url)
        self._wall_us = wall_us
        self._staged: set[str] = set()
        if exclusive:
            try:
                self._lock()
            except BaseException:
                self._conn.close()
                raise

    def _lock(self) -> None:
        with translating():
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (MERGE_LOCK,)).fetchone()
            held = self._conn.execute(
                "SELECT a.pid, coalesce(a.client_addr::text, 'local'), a.backend_start::text"
                " FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.granted AND a.pid <> pg_backend_pid()"
                " AND (l.classid::bigint << 32) + l.objid::bigint = %s",
                (MERGE_LOCK,),
            ).fetchone()
            self._conn.commit()
        if not (row and row[0]):
            who = f" (backend pid {held[0]}, client {held[1]}, since {held[2]})" if held else ""
            raise StoreError(
                "production database is already merged by another deduplicator"
                + who
                + "; run one deduplicator per production database"
            )

    def close(self) -> None:
        self._conn.close()

    # --- reads ------------------------------------------------------------------------

    def cursors(self) -> dict[tuple[str, str], Cursor]:
        with translating(), self._conn.transaction():
            rows = self._conn.execute(
                "SELECT gatherer_id, table_name, position::text, horizon FROM dedup_cursors"
            ).fetchall()
        return {(g, t): Cursor(tuple(orjson.loads(p)) or None, int(h)) for g, t, p, h in rows}

    def checkpoints(self, tickers: Iterable[str]) -> dict[str, Checkpoint]:
        with translating(), self._conn.transaction():
            rows = self._conn.execute(
                "SELECT ticker, seq, gatherer_id, conn_id, frame_no, received_at, segment_start,"
                " exchange_ts, yes_bids::text, no_bids::text, waiting, last_side, last_price,"
                " last_size_delta FROM dedup_books WHERE ticker = ANY(%s)",
                (list(tickers),),
            ).fetchall()
        out = {}
        for row in rows:
            book = OrderBook(row[0])
            book.yes = {int(p): int(s) for p, s in orjson.loads(row[8])}
            book.no = {int(p): int(s) for p, s in orjson.loads(row[9])}
            last = None if row[11] is None else (bool(row[11]), int(row[12]), int(row[13]))
            out[row[0]] = Checkpoint(
                ticker=row[0],
                seq=row[1],
                gatherer_id=row[2],
                conn_id=row[3],
                frame_no=row[4],
                received_at=row[5],
                segment_start=row[6],
                exchange_ts=row[7],
                book=book,
                waiting=row[10],
                last_delta=last,
            )
        return out

    def digests(self, table: KeyedTable, low: int, high: int) -> dict[int, tuple[int, int]]:
        """Production's side of :meth:`GathererDb.digests`."""
        with translating(), self._conn.transaction():
            rows = self._conn.execute(
                digest_sql(table).encode(), (DIGEST_BUCKET_US, low, high)
            ).fetchall()
        return {int(b): (int(n), int(h)) for b, n, h in rows}

    def waiting(self) -> list[str]:
        with translating(), self._conn.transaction():
            rows = self._conn.execute("SELECT ticker FROM dedup_books WHERE waiting").fetchall()
        return [r[0] for r in rows]

    # --- writes -----------------------------------------------------------------------

    def _copy(self, spec: TableSpec, rows: Sequence[Row]) -> None:
        if spec.name in self._staged:
            self._conn.execute(sql.SQL("TRUNCATE {}").format(_stage(spec)))
        ensure_stage(self._conn, spec, self._staged, prefix=_STAGE)
        with self._conn.cursor() as cur:
            copy_rows(cur, spec, rows, _stage(spec))

    def _copy_new(self, spec: TableSpec, rows: Sequence[Row]) -> int:
        """Binary COPY straight into the table: the merge emits each row once (its
        checkpoint commits with it), so the rows are new. Should one exist already, the
        COPY is undone and the rows go through the staging path, which skips it."""
        if not rows:
            return 0
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                copy_rows(cur, spec, rows, sql.Identifier(spec.name))
            return len(rows)
        except psycopg.errors.UniqueViolation:
            insert = sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} s ON CONFLICT DO NOTHING"
            ).format(
                sql.Identifier(spec.name),
                target_columns(spec),
                source_columns(spec, "s"),
                _stage(spec),
            )
            return self._insert(spec, rows, insert)

    def _insert(self, spec: TableSpec, rows: Sequence[Row], statement: sql.Composed) -> int:
        if not rows:
            return 0
        self._copy(spec, rows)
        return max(self._conn.execute(statement).rowcount, 0)

    def _set_cursor(self, gatherer_id: str, table: str, cursor: Cursor) -> None:
        self._conn.execute(
            "INSERT INTO dedup_cursors (gatherer_id, table_name, position, horizon, updated_at)"
            " VALUES (%s, %s, %s::jsonb, %s, %s) ON CONFLICT (gatherer_id, table_name) DO UPDATE"
            " SET position = EXCLUDED.position, horizon = EXCLUDED.horizon,"
            " updated_at = EXCLUDED.updated_at",
            (
                gatherer_id,
                table,
                json.dumps(list(cursor.position or ())),
                cursor.horizon,
                self._wall_us(),
            ),
        )

    def commit_keyed(
        self, gatherer_id: str, table: KeyedTable, rows: Sequence[Row], cursor: Cursor
    ) -> Counts:
        """Insert one gatherer's rows of a keyed table and advance its cursor, atomically."""
        with translating(), self._conn.transaction():
            inserted = self._insert(TABLES[table.name], rows, _keyed_insert(table))
            self._set_cursor(gatherer_id, table.name, cursor)
        return Counts(inserted, len(rows) - inserted)

    def commit_merge(
        self,
        deltas: Sequence[DeltaRow],
        snapshots: Sequence[SnapshotRow],
        holes: Sequence[GapRow],
        checkpoints: Sequence[Checkpoint],
        cursors: Mapping[str, Cursor],
    ) -> int:
        """Write merged order-book rows, holes, the new checkpoints and the gatherers'
        ``orderbook_deltas`` cursors in one transaction; returns the rows inserted."""
        inserted = 0
        with translating(), self._conn.transaction():
            inserted += self._copy_new(TABLES["orderbook_deltas"], deltas)
            for name, rows in (
                ("orderbook_snapshots", snapshots),
                ("gaps", holes),
            ):
                spec = TABLES[name]
                statement = sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM {} s ON CONFLICT DO NOTHING"
                ).format(
                    sql.Identifier(name),
                    target_columns(spec),
                    source_columns(spec, "s"),
                    _stage(spec),
                )
                inserted += self._insert(spec, rows, statement)
            if checkpoints:
                self._save_checkpoints(checkpoints)
            for gatherer_id, cursor in cursors.items():
                self._set_cursor(gatherer_id, "orderbook_deltas", cursor)
        return inserted

    def _save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        now = self._wall_us()
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dedup_books (ticker, seq, gatherer_id, conn_id, frame_no,"
                " received_at, segment_start, exchange_ts, yes_bids, no_bids, waiting,"
                " last_side, last_price, last_size_delta, updated_at) VALUES (%s, %s, %s, %s,"
                " %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s)"
                " ON CONFLICT (ticker) DO UPDATE SET seq = EXCLUDED.seq,"
                " gatherer_id = EXCLUDED.gatherer_id, conn_id = EXCLUDED.conn_id,"
                " frame_no = EXCLUDED.frame_no, received_at = EXCLUDED.received_at,"
                " segment_start = EXCLUDED.segment_start, exchange_ts = EXCLUDED.exchange_ts,"
                " yes_bids = EXCLUDED.yes_bids, no_bids = EXCLUDED.no_bids,"
                " waiting = EXCLUDED.waiting, last_side = EXCLUDED.last_side,"
                " last_price = EXCLUDED.last_price, last_size_delta = EXCLUDED.last_size_delta,"
                " updated_at = EXCLUDED.updated_at",
                [
                    (
                        c.ticker,
                        c.seq,
                        c.gatherer_id,
                        c.conn_id,
                        c.frame_no,
                        c.received_at,
                        c.segment_start,
                        c.exchange_ts,
                        _levels(c.book.yes),
                        _levels(c.book.no),
                        c.waiting,
                        *(c.last_delta if c.last_delta is not None else (None, None, None)),
                        now,
                    )
                    for c in checkpoints
                ],
            )
