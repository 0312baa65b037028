"""One database session for the deduplicator: reads, transactions, COPY and staged writes.

The deduplicator (:mod:`kalshi.dedup`) reads gatherer databases and writes production
through this class only; psycopg, its errors and its SQL composition stay in
``kalshi.store``. Every method raises :class:`StoreError` (:class:`DatabaseUnavailable`
when the server cannot be reached, or a statement outlasted ``statement_timeout`` or waited
longer than ``lock_timeout`` for a lock). Blocking; call from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from kalshi.models.rows import Row
from kalshi.store import staging
from kalshi.store.connection import connect, session_options, translating, try_lock
from kalshi.store.schema import TABLES, TableSpec
from kalshi.store.staging import (
    copy_rows,
    ensure_stage,
    fill_stage,
    insert_skipping,
    stage_name,
    upsert_latest,
)

__all__ = ["Holder", "Session"]


class Holder(NamedTuple):
    """The backend holding an advisory lock another session wanted."""

    pid: int
    client: str  # its address, ``local`` for a Unix socket
    since: str  # its backend_start, as PostgreSQL prints it


class Session:
    """One connection to the database at ``url``, opened on first use (and again after
    :meth:`close`).

    ``autocommit``: each statement outside :meth:`transaction` commits by itself (reads);
    otherwise statements outside a transaction block share one implicit transaction.
    ``statement_timeout``/``lock_timeout`` (seconds, 0 = the server's setting) bound every
    statement of the session. ``stage_prefix`` names the session's staging tables.
    """

    def __init__(
        self,
        url: str,
        *,
        autocommit: bool = False,
        statement_timeout: float = 0.0,
        lock_timeout: float = 0.0,
        stage_prefix: str = "_stage_",
    ) -> None:
        self.url = url
        self._autocommit = autocommit
        self._options = session_options(statement_timeout, lock_timeout)
        self._prefix = stage_prefix
        self._conn: psycopg.Connection[Any] | None = None
        self._staged: dict[str, int] = {}  # see fill_stage
        self._empty: set[str] = set()  # stages known to hold no row (see insert_committed)

    def open(self) -> Session:
        """Connect now (rather than at the first statement); returns ``self``."""
        self._connection()
        return self

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = connect(self.url, autocommit=self._autocommit, **self._options)
            self._staged, self._empty = {}, set()
        return self._conn

    def close(self) -> None:
        """Close the connection (the next statement opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around the block: committed when it ends, rolled back when it
        raises (psycopg errors inside leave as :class:`StoreError`). Staging tables created
        in a block that rolls back are gone with it, and forgotten."""
        conn = self._connection()
        staged = set(self._staged)
        try:
            with translating(), conn.transaction():
                yield
        except BaseException:
            for name in set(self._staged) - staged:
                del self._staged[name]
            raise

    # --- statements --------------------------------------------------------------------

    def query(
        self, statement: str, params: Sequence[Any] = (), *, binary: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run a statement with ``%s`` placeholders; return its rows (empty if none).
        ``binary``: results travel in PostgreSQL's binary format (faster to parse)."""
        conn = self._connection()
        with translating(), conn.cursor(binary=binary) as cur:
            cur.execute(statement.encode(), params or None)
            return list(cur.fetchall()) if cur.description is not None else []

    def rows(self, table: str, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        """:meth:`query` whose result columns are ``table``'s, in order (JSON as text), as
        that table's row class (binary results)."""
        row_type = TABLES[table].row_type
        return [row_type(*values) for values in self.query(statement, params, binary=True)]

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the affected row count (0 when it reports none)."""
        conn = self._connection()
        with translating(), conn.cursor() as cur:
            cur.execute(statement.encode(), params or None)
            return max(cur.rowcount, 0)

    def execute_many(self, statement: str, params: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter tuple (one round trip per batch)."""
        conn = self._connection()
        with translating(), conn.cursor() as cur:
            cur.executemany(statement.encode(), params)

    # --- locks -------------------------------------------------------------------------

    def try_advisory_lock(self, key: int) -> Holder | None:
        """Take the session advisory lock ``key`` (held until the connection closes), tried
        again for :data:`~kalshi.store.connection.LOCK_PATIENCE` while another session holds
        it: ``None`` when taken, else who holds it (``Holder(0, "", "")`` when the holder is
        gone by the time it is looked up)."""
        conn = self._connection()
        with translating():
            taken = try_lock(conn, "SELECT pg_try_advisory_lock(%s)", (key,))
            held = conn.execute(
                "SELECT a.pid, coalesce(a.client_addr::text, 'local'), a.backend_start::text"
                " FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.granted AND a.pid <> pg_backend_pid()"
                " AND (l.classid::bigint << 32) + l.objid::bigint = %s",
                (key,),
            ).fetchone()
            if not conn.autocommit:
                conn.commit()
        if taken:
            return None
        return Holder(int(held[0]), str(held[1]), str(held[2])) if held else Holder(0, "", "")

    # --- staged writes (inside a transaction) ------------------------------------------

    def _stage(self, spec: TableSpec, rows: Sequence[Row]) -> sql.Identifier:
        self._empty.discard(spec.name)
        with self._connection().cursor() as cur:
            return fill_stage(cur, spec, rows, self._staged, prefix=self._prefix)

    def _run(self, statement: sql.Composed) -> int:
        return max(self._connection().execute(statement).rowcount, 0)

    def insert_skipping(
        self,
        table: str,
        rows: Sequence[Row],
        *,
        identity: Sequence[str] | None = None,
        time: str = "",
    ) -> int:
        """Insert ``rows`` into ``table`` through a binary COPY into the session's staging
        table, skipping rows already stored (by key, or by ``identity``: see
        :func:`kalshi.store.staging.insert_skipping`); returns how many were inserted."""
        if not rows:
            return 0
        spec = TABLES[table]
        with translating():
            stage = self._stage(spec, rows)
            return self._run(insert_skipping(spec, stage, identity=identity, time=time))

    def upsert_latest(self, table: str, rows: Sequence[Row]) -> int:
        """Upsert ``rows`` into ``table`` (``markets``) by ticker, the newest ``updated_at``
        winning (see :func:`kalshi.store.staging.upsert_latest`); returns rows written."""
        if not rows:
            return 0
        spec = TABLES[table]
        with translating():
            return self._run(upsert_latest(spec, self._stage(spec, rows)))

    def copy_new(self, table: str, rows: Sequence[Row]) -> int:
        """Binary COPY of ``rows`` straight into ``table``, for rows the caller knows to be
        new (fastest). Should one exist already, the COPY is undone (a savepoint) and the
        rows go through :meth:`insert_skipping`, which skips it. Returns rows inserted."""
        if not rows:
            return 0
        spec = TABLES[table]
        conn = self._connection()
        with translating():
            try:
                with conn.transaction(), conn.cursor() as cur:
                    copy_rows(cur, spec, rows, sql.Identifier(spec.name))
                return len(rows)
            except psycopg.errors.UniqueViolation:
                pass
        return self.insert_skipping(table, rows)

    # --- one staged write, committed in few round trips --------------------------------

    def insert_committed(
        self,
        table: str,
        rows: Sequence[Row],
        *,
        identity: Sequence[str] | None = None,
        time: str = "",
        upsert: bool = False,
        on_inserted: tuple[str, Sequence[Any]] | None = None,
        then: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> int:
        """One transaction of its own, committed: ``rows`` are COPYed into the session's
        stage of ``table``, then, in one round trip (pipeline mode), inserted as
        :meth:`insert_skipping` (``identity``, ``time``) or :meth:`upsert_latest`
        (``upsert``) do, ``on_inserted`` (a statement and its parameters that reads the
        rows just written as the table ``inserted``, their columns unless ``upsert``: it
        runs as part of the insert), the
        statements ``then``, the stage emptied for the next call, and ``COMMIT``. Returns
        the rows written; nothing is written when it raises.

        The same work as a :meth:`transaction` around :meth:`insert_skipping` and
        :meth:`execute` calls, in four round trips (``BEGIN``, the COPY's two, the
        pipeline) instead of one a statement: a bare COPY's transaction takes four too. A
        round trip waits for the server and then for this thread to get the GIL back from
        the deduplicator's other (computing) thread: at ``sync.batch_size`` 100 the keyed
        copy's transactions were most of a merge pass (issue 19)."""
        if not rows:
            raise ValueError("insert_committed needs rows")
        spec = TABLES[table]
        conn = self._connection()
        stage = stage_name(spec, self._prefix)
        if upsert:  # returns a row per row written already
            insert = upsert_latest(spec, stage)
        else:
            insert = insert_skipping(spec, stage, identity=identity, time=time)
            insert = sql.SQL("{} RETURNING *").format(insert)
        after, params = on_inserted if on_inserted is not None else ("SELECT 1", ())
        statement = sql.SQL(
            "WITH inserted AS ({insert}), after AS ({after}) SELECT count(*) FROM inserted"
        ).format(insert=insert, after=sql.SQL(after))
        created = spec.name not in self._staged
        truncate = self._staged.get(spec.name, 0) + len(rows) >= staging.STAGE_TRUNCATE_ROWS
        empty = sql.SQL("TRUNCATE {}" if truncate else "DELETE FROM {}").format(stage)
        try:
            with translating(), conn.cursor() as cur, conn.cursor() as counted:
                ensure_stage(conn, spec, self._staged, prefix=self._prefix)
                if spec.name not in self._empty:
                    cur.execute(sql.SQL("DELETE FROM {}").format(stage))
                self._empty.discard(spec.name)
                copy_rows(cur, spec, rows, stage)
                with conn.pipeline():
                    counted.execute(statement, params)
                    for follow, follow_params in then:
                        cur.execute(follow.encode(), follow_params or None)
                    cur.execute(empty)
                    conn.commit()
                row = counted.fetchone()
        except BaseException:
            if created:
                self._staged.pop(spec.name, None)
            self._rollback()
            raise
        self._staged[spec.name] = 0 if truncate else self._staged[spec.name] + len(rows)
        self._empty.add(spec.name)
        return int(row[0]) if row is not None else 0

    def _rollback(self) -> None:
        """End a failed implicit transaction (a connection that broke is dropped)."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.rollback()
        except psycopg.Error:
            self.close()
