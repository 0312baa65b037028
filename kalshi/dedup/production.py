"""Writes to the production database: rows, cursors and checkpoints in one transaction.

Blocking (one :class:`~kalshi.store.session.Session`); the service calls it through
``trio.to_thread.run_sync``. Each ``commit_*`` method is one transaction: the rows it
inserts and the cursors or checkpoints that cover them are committed together or not at
all, so a crash (even ``kill -9``) between two calls neither skips nor repeats anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from kalshi.book import OrderBook
from kalshi.clock import WallClock, system_wall_us
from kalshi.dedup.merge import DEDUP_ID, HOLE_KIND, Checkpoint
from kalshi.dedup.tables import DIGEST_BUCKET_US, EXPORT_TABLES, KeyedTable, digest_sql
from kalshi.errors import StoreError
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow
from kalshi.store import Session

__all__ = ["PRODUCTION_INDEXES", "Counts", "Cursor", "Production"]

_STAGE = "_dedup_"  # prefix of production's staging tables

# Indexes only production needs: the export reads the merged book stream by position
# (kalshi/dedup/export.py). Migration 011 drops them from a database no deduplicator has
# merged into (a gatherer's, where every delta paid for one: 3.4 of 8.2 µs of the
# server's CPU a row); the merging deduplicator creates them when missing.
PRODUCTION_INDEXES: Mapping[str, str] = {
    "orderbook_deltas_ticker_seq": (
        "CREATE INDEX IF NOT EXISTS orderbook_deltas_ticker_seq"
        " ON orderbook_deltas (ticker, seq) WHERE seq IS NOT NULL"
    ),
    "orderbook_snapshots_ticker_seq": (
        "CREATE INDEX IF NOT EXISTS orderbook_snapshots_ticker_seq"
        " ON orderbook_snapshots (ticker, seq) WHERE seq IS NOT NULL"
    ),
}


class Cursor(NamedTuple):
    position: tuple[Any, ...] | None  # key of the last merged row
    horizon: int  # gatherer time merged up to, µs (a receipt, in the gatherer's own clock)
    reached: int | None = None  # ``horizon`` as exchange time (µs), by the gatherer's offset
    received_to: int | None = None  # receipt before which no row will be added (its clock)
    # keyed tables: the gatherer's rows written by transactions below this id are merged
    # (``ingest_xid``); None: its rows written before migration 009 are still read by receipt
    committed: int | None = None


class Counts(NamedTuple):
    inserted: int
    duplicates: int


def _levels(book: dict[int, int]) -> str:
    return json.dumps(sorted(book.items()))


MERGE_LOCK = 0x6B616C73686464  # "kalshdd": the one deduplicator of a production database


class Production:
    """One session on the production database (call from a worker thread).

    ``exclusive``: take the session advisory lock :data:`MERGE_LOCK` first, so a second
    deduplicator on the same production database is refused (its books would interleave
    with ours): raises :class:`StoreError` naming the backend that holds it.
    ``statement_timeout``/``lock_timeout`` (seconds, 0 = none) bound every statement
    (:class:`~kalshi.store.session.Session`).
    """

    def __init__(
        self,
        url: str,
        *,
        exclusive: bool = False,
        wall_us: WallClock = system_wall_us,
        statement_timeout: float = 0.0,
        lock_timeout: float = 0.0,
    ) -> None:
        self._db = Session(
            url,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
            stage_prefix=_STAGE,
        ).open()
        self._wall_us = wall_us
        if exclusive:
            try:
                self._lock()
                self._ensure_indexes()
            except BaseException:
                self._db.close()
                raise

    def _ensure_indexes(self) -> None:
        """Create the :data:`PRODUCTION_INDEXES` that are missing (no DDL when all are
        there, so a role with only DML rights can merge into a migrated database)."""
        with self._db.transaction():  # one transaction, committed (the session's are not)
            present = {
                name
                for (name,) in self._db.query(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                    " AND indexname = ANY(%s)",
                    (list(PRODUCTION_INDEXES),),
                )
            }
            for name, ddl in PRODUCTION_INDEXES.items():
                if name not in present:
                    self._db.execute(ddl)

    def _lock(self) -> None:
        holder = self._db.try_advisory_lock(MERGE_LOCK)
        if holder is not None:
            who = (
                f" (backend pid {holder.pid}, client {holder.client}, since {holder.since})"
                if holder.pid
                else ""
            )
            raise StoreError(
                "production database is already merged by another deduplicator"
                + who
                + "; run one deduplicator per production database"
            )

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        """One round trip (``SELECT 1``, its own transaction); raises
        :class:`~kalshi.errors.DatabaseUnavailable` when the server is gone (bounded by the
        session's ``statement_timeout`` and the connection's TCP keepalives)."""
        with self._db.transaction():
            self._db.query("SELECT 1")

    # --- reads ------------------------------------------------------------------------

    def cursors(self) -> dict[tuple[str, str], Cursor]:
        with self._db.transaction():
            rows = self._db.query(
                "SELECT gatherer_id, table_name, position::text, horizon, reached,"
                " received_to, committed FROM dedup_cursors"
            )
        return {
            (g, t): Cursor(tuple(orjson.loads(p)) or None, int(h), r, to, c)
            for g, t, p, h, r, to, c in rows
        }

    def checkpoints(self, tickers: Iterable[str]) -> dict[str, Checkpoint]:
        with self._db.transaction():
            rows = self._db.query(
                "SELECT ticker, seq, gatherer_id, conn_id, frame_no, received_at, segment_start,"
                " exchange_ts, yes_bids::text, no_bids::text, waiting, last_side, last_price,"
                " last_size_delta, last_ts FROM dedup_books WHERE ticker = ANY(%s)",
                (list(tickers),),
            )
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
                last_ts=row[14],
                last_delta=last,
            )
        return out

    def digests(self, table: KeyedTable, low: int, high: int) -> dict[int, tuple[int, int]]:
        """Production's side of :meth:`GathererDb.digests`."""
        with self._db.transaction():
            rows = self._db.query(digest_sql(table), (DIGEST_BUCKET_US, low, high))
        return {int(b): (int(n), int(h)) for b, n, h in rows}

    def waiting(self) -> list[str]:
        with self._db.transaction():
            rows = self._db.query("SELECT ticker FROM dedup_books WHERE waiting")
        return [r[0] for r in rows]

    # --- writes -----------------------------------------------------------------------

    def _cursor_statement(
        self, gatherer_id: str, table: str, cursor: Cursor
    ) -> tuple[str, tuple[Any, ...]]:
        """The upsert of ``dedup_cursors`` that moves (gatherer, table) to ``cursor``."""
        return (
            "INSERT INTO dedup_cursors (gatherer_id, table_name, position, horizon, reached,"
            " received_to, committed, updated_at) VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s)"
            " ON CONFLICT (gatherer_id, table_name) DO UPDATE"
            " SET position = EXCLUDED.position, horizon = EXCLUDED.horizon,"
            " reached = EXCLUDED.reached, received_to = EXCLUDED.received_to,"
            " committed = EXCLUDED.committed, updated_at = EXCLUDED.updated_at",
            (
                gatherer_id,
                table,
                json.dumps(list(cursor.position or ())),
                cursor.horizon,
                cursor.reached,
                cursor.received_to,
                cursor.committed,
                self._wall_us(),
            ),
        )

    def _set_cursor(self, gatherer_id: str, table: str, cursor: Cursor) -> None:
        self._db.execute(*self._cursor_statement(gatherer_id, table, cursor))

    def _touch(self, touched: Mapping[str, int]) -> None:
        """Record, per exported table, the oldest export time of rows just inserted
        (``dedup_touched``, see :mod:`kalshi.dedup.export`): in table order, so that two
        transactions never wait on each other's rows."""
        for table in sorted(touched):
            self._db.execute(
                "INSERT INTO dedup_touched (table_name, since) VALUES (%s, %s)"
                " ON CONFLICT (table_name) DO UPDATE"
                " SET since = least(dedup_touched.since, EXCLUDED.since)",
                (table, touched[table]),
            )

    def commit_keyed(
        self, gatherer_id: str, table: KeyedTable, rows: Sequence[Row], cursor: Cursor | None
    ) -> Counts:
        """Insert one gatherer's rows of a keyed table and advance its cursor (``None``:
        leave it), atomically: one transaction of few round trips
        (:meth:`Session.insert_committed`), the export's ``dedup_touched`` mark written by
        the insert itself, from the rows it inserted."""
        if not rows:
            if cursor is not None:
                with self._db.transaction():
                    self._set_cursor(gatherer_id, table.name, cursor)
            return Counts(0, 0)
        column = EXPORT_TABLES.get(table.name)
        touch = None
        if column is not None:
            touch = (
                f"INSERT INTO dedup_touched (table_name, since) SELECT %s, min({column})"
                " FROM inserted HAVING count(*) > 0 ON CONFLICT (table_name) DO UPDATE"
                " SET since = least(dedup_touched.since, EXCLUDED.since)",
                (table.name,),
            )
        moved = [] if cursor is None else [self._cursor_statement(gatherer_id, table.name, cursor)]
        keyed = table.identity == table.key or table.upsert
        inserted = self._db.insert_committed(
            table.name,
            rows,
            identity=None if keyed else table.identity,
            time=table.key[0] if table.timed and not keyed else "",  # the event's time
            upsert=table.upsert,
            on_inserted=touch,
            then=moved,
        )
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
        ``orderbook_deltas`` cursors in one transaction; returns the rows inserted.
        The merge emits each delta once (its checkpoint commits with it), so deltas are
        copied straight in (:meth:`Session.copy_new`). Tables given rows are touched
        (``dedup_touched``) in the same transaction."""
        with self._db.transaction():
            new_deltas = self._db.copy_new("orderbook_deltas", deltas)
            new_snapshots = self._db.insert_skipping("orderbook_snapshots", snapshots)
            new_holes = self._db.insert_skipping("gaps", holes)
            inserted = new_deltas + new_snapshots + new_holes
            touched = {}
            if new_deltas:  # the book stream's windows are placed by its deltas
                touched["orderbook_deltas"] = min(d.exchange_ts for d in deltas)
            if new_snapshots:
                touched["orderbook_snapshots"] = min(s.snapshot_ts for s in snapshots)
            if new_holes:
                touched["gaps"] = min(h.start_ts for h in holes)
            self._touch(touched)
            if checkpoints:
                self._save_checkpoints(checkpoints)
            for gatherer_id, cursor in cursors.items():
                self._set_cursor(gatherer_id, "orderbook_deltas", cursor)
        return inserted

    def commit_holes(self, holes: Sequence[GapRow]) -> int:
        """Write channel holes (:mod:`kalshi.dedup.coverage`, ``ticker`` NULL, one channel
        a ``sid``) in one transaction; returns the rows inserted (``gaps`` touched for the
        export when any). A hole overlapping one already stored for its channel is that
        hole measured again (a gatherer's clock offset is measured anew each pass, so its
        ends may move by microseconds) and is skipped: each hole is one row, also across
        restarts of the deduplicator (outside tester F2)."""
        if not holes:
            return 0
        with self._db.transaction():
            stored = self._db.query(
                "SELECT sid, start_ts, end_ts FROM gaps WHERE ticker IS NULL"
                " AND gatherer_id = %s AND kind = %s AND start_ts < %s AND end_ts > %s",
                (
                    DEDUP_ID,
                    HOLE_KIND,
                    max(h.end_ts if h.end_ts is not None else 2**62 for h in holes),
                    min(h.start_ts for h in holes),
                ),
            )
            new = [
                h
                for h in holes
                if h.end_ts is not None
                and not any(
                    sid == h.sid and start < h.end_ts and end > h.start_ts
                    for sid, start, end in stored
                )
            ]
            inserted = self._db.insert_skipping("gaps", new) if new else 0
            if inserted:
                self._touch({"gaps": min(h.start_ts for h in new)})
        return inserted

    def _save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        now = self._wall_us()
        self._db.execute_many(
            "INSERT INTO dedup_books (ticker, seq, gatherer_id, conn_id, frame_no,"
            " received_at, segment_start, exchange_ts, yes_bids, no_bids, waiting,"
            " last_side, last_price, last_size_delta, last_ts, updated_at) VALUES (%s, %s, %s,"
            " %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (ticker) DO UPDATE SET seq = EXCLUDED.seq,"
            " gatherer_id = EXCLUDED.gatherer_id, conn_id = EXCLUDED.conn_id,"
            " frame_no = EXCLUDED.frame_no, received_at = EXCLUDED.received_at,"
            " segment_start = EXCLUDED.segment_start, exchange_ts = EXCLUDED.exchange_ts,"
            " yes_bids = EXCLUDED.yes_bids, no_bids = EXCLUDED.no_bids,"
            " waiting = EXCLUDED.waiting, last_side = EXCLUDED.last_side,"
            " last_price = EXCLUDED.last_price, last_size_delta = EXCLUDED.last_size_delta,"
            " last_ts = EXCLUDED.last_ts,"
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
                    c.last_ts,
                    now,
                )
                for c in checkpoints
            ],
        )
