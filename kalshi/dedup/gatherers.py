"""Reads from one gatherer's database (blocking; called from worker threads).

Rows come back as the NamedTuples of :mod:`kalshi.models.rows` (JSON as text). The
connection is opened lazily and dropped after an error, so an unreachable database costs
one failed connect per pass and is picked up again when it returns. Every failure is a
:class:`~kalshi.errors.GathererError` naming the gatherer, never taken for production's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kalshi.config import GathererSource
from kalshi.dedup.coverage import COVERAGE_KINDS
from kalshi.dedup.tables import DIGEST_BUCKET_US, KeyedTable, digest_sql, occurrence_sql
from kalshi.errors import GathererError, StoreError
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow
from kalshi.store import TABLES, Session

__all__ = ["LATENCY_US", "SKEW_US", "GathererDb"]

LATENCY_US = 2_000_000
"""Bound on how long after its exchange time a frame is received."""
SKEW_US = 60_000_000
"""Bound on how far ``received_at - exchange_ts`` of a delta strays from the gatherer's
measured offset (:meth:`GathererDb.measure_offset`): order-book rows are selected by when
they were received (frame order on a connection, unlike exchange times), and the
exchange-time index narrows the search to the receipt window shifted by the gatherer's own
clock offset, widened by this much. A gatherer whose clock is minutes off is still read
completely (issue 18: a fixed window around receipt lost every row of a clock 90 s behind)."""
OFFSET_SAMPLE_US = 600_000_000
"""The newest exchange time measured for a gatherer's clock offset."""
ID_SAMPLE = 1000
"""The newest trades and deltas whose gatherer ids :meth:`GathererDb.gatherer_ids` reads."""

_HIGH_WATER = (
    "SELECT greatest((SELECT max(exchange_ts) FROM trades),"
    " (SELECT max(exchange_ts) FROM orderbook_deltas),"
    " (SELECT max(exchange_ts) FROM orderbook_snapshots),"
    " (SELECT max(exchange_ts) FROM tickers),"
    " (SELECT max(exchange_ts) FROM market_lifecycle))"
)


_RECEIVED = "received_at > %s AND received_at <= %s AND exchange_ts > %s AND exchange_ts <= %s"


def _received(low: int, high: int, offset: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    """Parameters of :data:`_RECEIVED`: received in ``(low, high]`` by a gatherer whose
    ``received_at - exchange_ts`` lies in ``offset`` (min, max), give or take SKEW_US."""
    return (low, high, low - offset[1] - SKEW_US, high - offset[0] + SKEW_US)


def _select(
    table: str,
    where: str,
    order: str,
    limit: int | None = None,
    *,
    counted: KeyedTable | None = None,
) -> str:
    """``counted``: the row's ``occurrence`` is computed (:func:`occurrence_sql`)."""
    spec = TABLES[table]

    def column(c: str) -> str:
        if c == "occurrence" and counted is not None:
            return occurrence_sql(counted)
        return f"{c}::text" if c in spec.json_columns else c

    columns = ", ".join(column(c) for c in spec.columns)
    tail = f" LIMIT {int(limit)}" if limit is not None else ""
    return f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order}{tail}"


class GathererDb:
    """Reads of one gatherer's database; ``statement_timeout``/``lock_timeout`` (seconds,
    0 = the server's setting) bound every statement (:class:`~kalshi.store.session.Session`)."""

    def __init__(
        self, source: GathererSource, *, statement_timeout: float = 0.0, lock_timeout: float = 0.0
    ) -> None:
        self.id = source.id
        self.url = source.timescaledb
        self._db = Session(
            self.url,
            autocommit=True,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
        )
        # (min, max) of received_at - exchange_ts of its newest deltas: latency plus the
        # gatherer's clock offset from the exchange's (its clock, not ours, stamps receipts)
        self.offset: tuple[int, int] = (0, 0)

    def measure_offset(self) -> tuple[int, int]:
        """Measure :attr:`offset` on the deltas of the newest :data:`OFFSET_SAMPLE_US` of
        exchange time (kept when there are none) and return it."""
        row = self._query(
            "SELECT min(received_at - exchange_ts), max(received_at - exchange_ts)"
            " FROM orderbook_deltas WHERE exchange_ts >="
            " (SELECT max(exchange_ts) FROM orderbook_deltas) - %s",
            (OFFSET_SAMPLE_US,),
        )[0]
        if row[0] is not None and row[1] is not None:
            self.offset = (int(row[0]), int(row[1]))
        return self.offset

    def close(self) -> None:
        self._db.close()

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            # Binary results: the merge reads every row of every gatherer, parse them fast.
            return self._db.query(statement, params, binary=True)
        except StoreError as exc:
            self.close()
            raise GathererError(self.id, exc) from exc

    def _rows(self, table: str, statement: str, params: Sequence[Any]) -> list[Row]:
        try:
            return self._db.rows(table, statement, params)
        except StoreError as exc:
            self.close()
            raise GathererError(self.id, exc) from exc

    def high_water(self) -> int | None:
        """The newest exchange time in any market-data table (µs), ``None`` when all are
        empty. Exchange times only: a receipt (a WebSocket snapshot's ``snapshot_ts``) is in
        the gatherer's clock, and high waters are compared between gatherers."""
        value = self._query(_HIGH_WATER)[0][0]
        return None if value is None else int(value)

    def complete_through(self) -> int | None:
        """The newest receipt (µs, the gatherer's clock) through which the gatherer has
        committed every row it received: the microsecond before its ingest watermark;
        ``None`` when it records none (all rows are final).

        ``complete_before`` is exclusive: it is the time of the oldest row still pending
        (:meth:`kalshi.store.Store.complete_before`), so a row received at exactly it may
        not be committed yet. Read through it, a cursor would pass that row before it
        lands and never read it (the scale proof's unequal book: a delta missing from its
        source's stream)."""
        value = self._query("SELECT min(complete_before) FROM ingest_watermark")[0][0]
        return None if value is None else int(value) - 1

    def gatherer_ids(self) -> dict[str, int | None]:
        """The gatherer ids found in the database: every one with an ingest watermark (its
        ``complete_before``, µs) and every one of its newest :data:`ID_SAMPLE` trades and
        deltas (``None`` when it has no watermark). Read backwards through the primary keys
        (exchange time first): cheap at any size."""
        rows = self._query(
            "SELECT gatherer_id, complete_before FROM ingest_watermark"
            " UNION SELECT gatherer_id, NULL FROM ((SELECT gatherer_id FROM trades"
            "  ORDER BY exchange_ts DESC LIMIT %s)"
            "  UNION (SELECT gatherer_id FROM orderbook_deltas"
            "  ORDER BY exchange_ts DESC LIMIT %s)) AS r"
            " WHERE gatherer_id NOT IN (SELECT gatherer_id FROM ingest_watermark)",
            (ID_SAMPLE, ID_SAMPLE),
        )
        return {str(g): None if at is None else int(at) for g, at in sorted(rows)}

    def received_water(self) -> int | None:
        """The newest receipt of an order-book row (µs), ``None`` when there is none.

        Deltas are received within :data:`LATENCY_US` of their exchange time, so only the
        newest stretch of the exchange-time index is read.
        """
        value = self._query(
            "SELECT greatest((SELECT max(received_at) FROM orderbook_deltas WHERE exchange_ts"
            " >= (SELECT max(exchange_ts) FROM orderbook_deltas) - %s),"
            " (SELECT max(snapshot_ts) FROM orderbook_snapshots WHERE source = 'ws'))",
            (LATENCY_US,),
        )[0][0]
        return None if value is None else int(value)

    def next_delta(self, after: int, high: int) -> tuple[int, int] | None:
        """``(received_at, exchange_ts)`` of the first delta received in ``(after, high]``
        (µs, the gatherer's clock and the exchange's); ``None`` when there is none."""
        rows = self._query(
            f"SELECT received_at, exchange_ts FROM orderbook_deltas WHERE {_RECEIVED}"
            " ORDER BY received_at LIMIT 1",
            _received(after, high, self.offset),
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def progress(self, high: int) -> int | None:
        """The newest exchange time (µs) of a delta received up to ``high`` (the
        gatherer's clock); ``None`` when there is none."""
        value = self._query(
            "SELECT max(exchange_ts) FROM orderbook_deltas"
            " WHERE received_at <= %s AND exchange_ts <= %s",
            (high, high - self.offset[0] + SKEW_US),
        )[0][0]
        return None if value is None else int(value)

    def digests(self, table: KeyedTable, low: int, high: int) -> dict[int, tuple[int, int]]:
        """``bucket -> (events, identity hash sum)`` of ``low < time <= high``."""
        rows = self._query(digest_sql(table, computed=table.counted), (DIGEST_BUCKET_US, low, high))
        return {int(b): (int(n), int(h)) for b, n, h in rows}

    def has_legacy(self, table: KeyedTable) -> bool:
        """Whether ``table`` holds a row written before migration 009 (``ingest_xid``
        NULL; through its index)."""
        found = self._query(f"SELECT EXISTS (SELECT 1 FROM {table.name} WHERE ingest_xid IS NULL)")
        return bool(found[0][0])

    def next_time(self, table: KeyedTable, after: int) -> int | None:
        """The first time after ``after`` with a row written before migration 009
        (``ingest_xid`` NULL), ``None`` when there is none."""
        where = f"{table.time} > %s AND ingest_xid IS NULL" + (
            f" AND {table.filter}" if table.filter else ""
        )
        value = self._query(f"SELECT min({table.time}) FROM {table.name} WHERE {where}", (after,))
        return None if value[0][0] is None else int(value[0][0])

    def keyed_rows(
        self,
        table: KeyedTable,
        ranges: Sequence[tuple[int, int]] | None,
        commits: tuple[int, int] | None = None,
    ) -> list[Row]:
        """Rows with ``low < time <= high`` for any of ``ranges`` (``None``: any time), in
        key order; with ``commits`` only those written by the transactions ``[low, high)``
        (``ingest_xid``), else only rows written before migration 009 (``ingest_xid`` NULL)."""
        if ranges is not None and not ranges:
            return []
        clauses = []
        params: list[int] = []
        if ranges is not None:
            spans = " OR ".join(f"({table.time} > %s AND {table.time} <= %s)" for _ in ranges)
            clauses.append(f"({spans})")
            params += [bound for span in ranges for bound in span]
        if commits is None:
            clauses.append("ingest_xid IS NULL")
        else:
            clauses.append("ingest_xid >= %s AND ingest_xid < %s")
            params += commits
        if table.filter:
            clauses.append(table.filter)
        where = " AND ".join(clauses)
        counted = table if table.counted else None
        statement = _select(table.name, where, ", ".join(table.key), counted=counted)
        return self._rows(table.name, statement, params)

    def safe_commit(self) -> int:
        """The commit horizon (a transaction id, ``xid8`` as integer): every transaction
        with a lower id has committed or rolled back, and any later one gets a higher id,
        so the rows with ``ingest_xid`` below it are final (the xmin of a fresh snapshot;
        PostgreSQL's ``pg_current_snapshot``). A long transaction anywhere on the
        gatherer's server holds it back: rows wait, none is skipped."""
        value = self._query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return int(value[0][0])

    def commit_step(self, table: KeyedTable, low: int, high: int, limit: int) -> int:
        """The end (exclusive) of the next read of ``table``'s rows written by the
        transactions ``[low, high)``: at most ``limit`` rows, or the rows of one
        transaction when it wrote more."""
        where = "ingest_xid >= %s AND ingest_xid < %s" + (
            f" AND {table.filter}" if table.filter else ""
        )
        found = self._query(
            f"SELECT ingest_xid FROM {table.name} WHERE {where}"
            " ORDER BY ingest_xid OFFSET %s LIMIT 1",
            (low, high, limit),
        )
        if not found:
            return high
        at = int(found[0][0])
        return at if at > low else at + 1

    def read_receipts(self, table: KeyedTable, committed: int | None) -> tuple[int | None, int]:
        """``(newest, read)``: the time column (a receipt) of the newest row of ``table``
        by commit order (``ingest_xid``), ``None`` when it has none, and of the newest row
        written by a transaction below ``committed`` (the merge's cursor: the rows it has
        read), the first row's when there is none."""
        rows = f"SELECT {table.time} FROM {table.name} WHERE ingest_xid IS NOT NULL" + (
            f" AND {table.filter}" if table.filter else ""
        )
        newest = f"({rows} ORDER BY ingest_xid DESC LIMIT 1)"
        first = f"({rows} ORDER BY ingest_xid LIMIT 1)"
        read = f"({rows} AND ingest_xid < %s ORDER BY ingest_xid DESC LIMIT 1)"
        row = self._query(
            f"SELECT {newest}, coalesce({read}, {first})",
            (committed if committed is not None else 0,),
        )[0]
        return (None, 0) if row[0] is None else (int(row[0]), int(row[1]))

    def commit_span(self, table: KeyedTable, low: int, high: int) -> tuple[int, int] | None:
        """``(min, max)`` of ``table``'s time column among the rows written by the
        transactions ``[low, high)``; ``None`` when they wrote none."""
        where = "ingest_xid >= %s AND ingest_xid < %s" + (
            f" AND {table.filter}" if table.filter else ""
        )
        row = self._query(
            f"SELECT min({table.time}), max({table.time}) FROM {table.name} WHERE {where}",
            (low, high),
        )[0]
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def latest_deltas(self, low: int, high: int) -> dict[str, int]:
        """Per market, the newest exchange time of the deltas received in ``(low, high]``."""
        rows = self._query(
            f"SELECT ticker, max(exchange_ts) FROM orderbook_deltas WHERE {_RECEIVED}"
            " GROUP BY ticker",
            _received(low, high, self.offset),
        )
        return {str(ticker): int(at) for ticker, at in rows}

    def deltas_of(self, tickers: Sequence[str], low: int, high: int) -> list[DeltaRow]:
        """Deltas of ``tickers`` received in ``(low, high]``, in frame order."""
        statement = _select(
            "orderbook_deltas", f"{_RECEIVED} AND ticker = ANY(%s)", "conn_id, frame_no"
        )
        params = (*_received(low, high, self.offset), list(tickers))
        return self._rows("orderbook_deltas", statement, params)  # type: ignore[return-value]

    def dated(self, rows: Sequence[SnapshotRow]) -> list[SnapshotRow]:
        """``rows`` with an exchange time where they have none (a WebSocket snapshot's only
        time is its receipt, in the gatherer's clock): the receipt less the gatherer's
        measured offset (:attr:`offset`), so that the merge compares it with exchange times
        (issue 18: a clock 90 s behind made every resnapshot look older than the deltas it
        follows). The merge writes them to production without it (:func:`undated`)."""
        shift = self.offset[0]
        return [
            r._replace(exchange_ts=r.snapshot_ts - shift) if r.exchange_ts is None else r
            for r in rows
        ]

    def snapshots_between(self, low: int, high: int) -> list[SnapshotRow]:
        """WebSocket snapshots received in ``(low, high]`` (``snapshot_ts`` is the receipt)."""
        statement = _select(
            "orderbook_snapshots",
            "source = 'ws' AND snapshot_ts > %s AND snapshot_ts <= %s",
            "conn_id, frame_no",
        )
        return self._rows("orderbook_snapshots", statement, (low, high))  # type: ignore[return-value]

    def uncovered(self) -> list[tuple[str, int, int]]:
        """``(detail, start_ts, end_ts)`` of its closed connection-wide gaps of the kinds
        that mean a connection received nothing (:data:`coverage.COVERAGE_KINDS`), in its
        clock; an open one (a connection still down) is not final yet."""
        return self._query(
            "SELECT detail, start_ts, end_ts FROM gaps WHERE ticker IS NULL"
            " AND end_ts IS NOT NULL AND kind = ANY(%s) ORDER BY start_ts",
            (list(COVERAGE_KINDS),),
        )

    def gaps_since(self, since: int) -> list[GapRow]:
        statement = _select("gaps", "start_ts >= %s", "start_ts")
        return self._rows("gaps", statement, (since,))  # type: ignore[return-value]

    def market_history(
        self, ticker: str, since: int | None, high: int
    ) -> tuple[list[SnapshotRow], list[DeltaRow], list[GapRow]]:
        """The WS snapshots, deltas and gaps of ``ticker`` from its last snapshot at or
        before the exchange time ``since`` (received by then, by the gatherer's measured
        offset; from the beginning when ``None`` or there is none) up to the receipt
        ``high``."""
        anchor = 0
        if since is not None:
            found = self._query(
                "SELECT max(snapshot_ts) FROM orderbook_snapshots"
                " WHERE ticker = %s AND source = 'ws' AND snapshot_ts <= %s",
                (ticker, since + self.offset[0]),  # ``since`` in the gatherer's clock
            )[0][0]
            anchor = 0 if found is None else int(found)
        snapshots = self._rows(
            "orderbook_snapshots",
            _select(
                "orderbook_snapshots",
                "ticker = %s AND source = 'ws' AND snapshot_ts >= %s AND snapshot_ts <= %s",
                "conn_id, frame_no",
            ),
            (ticker, anchor, high),
        )
        deltas = self._rows(
            "orderbook_deltas",
            _select(
                "orderbook_deltas",
                f"ticker = %s AND {_RECEIVED}",
                "conn_id, frame_no",
            ),
            (ticker, *_received(anchor - SKEW_US, high, self.offset)),
        )
        return snapshots, deltas, self.gaps_since(anchor)  # type: ignore[return-value]
