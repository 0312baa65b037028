"""Reads from one gatherer's database (blocking; called from worker threads).

Rows come back as the NamedTuples of :mod:`kalshi.models.rows` (JSON as text). The
connection is opened lazily and dropped after an error, so an unreachable database costs
one failed connect per pass and is picked up again when it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from kalshi.config import GathererSource
from kalshi.dedup.tables import DIGEST_BUCKET_US, KeyedTable, digest_sql
from kalshi.errors import StoreError
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow
from kalshi.store.connection import connect, translating
from kalshi.store.schema import TABLES

__all__ = ["HISTORY_SLACK_US", "GathererDb"]

HISTORY_SLACK_US = 60_000_000
"""How much earlier than a snapshot's receipt its connection's next delta may be stamped."""

_HIGH_WATER = (
    "SELECT greatest((SELECT max(exchange_ts) FROM trades),"
    " (SELECT max(exchange_ts) FROM orderbook_deltas),"
    " (SELECT max(snapshot_ts) FROM orderbook_snapshots),"
    " (SELECT max(exchange_ts) FROM tickers),"
    " (SELECT max(exchange_ts) FROM market_lifecycle))"
)


def _select(table: str, where: str, order: str, limit: int | None = None) -> str:
    spec = TABLES[table]
    columns = ", ".join(f"{c}::text" if c in spec.json_columns else c for c in spec.columns)
    tail = f" LIMIT {int(limit)}" if limit is not None else ""
    return f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order}{tail}"


class GathererDb:
    def __init__(self, source: GathererSource) -> None:
        self.id = source.id
        self.url = source.timescaledb
        self._conn: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._conn is None:
            self._conn = connect(self.url, autocommit=True)
        try:
            # Binary results: the merge reads every row of every gatherer, parse them fast.
            with translating(), self._conn.cursor(binary=True) as cur:
                cur.execute(statement.encode(), params or None)
                return cur.fetchall()
        except StoreError:
            self.close()
            raise

    def _rows(self, table: str, statement: str, params: Sequence[Any]) -> list[Row]:
        row_type = TABLES[table].row_type
        return [row_type(*values) for values in self._query(statement, params)]

    def high_water(self) -> int | None:
        """The newest time in any market-data table (µs), ``None`` when all are empty."""
        value = self._query(_HIGH_WATER)[0][0]
        return None if value is None else int(value)

    def low_water(self) -> int | None:
        """The oldest order-book time (µs), ``None`` when there is none."""
        value = self._query(
            "SELECT least((SELECT min(exchange_ts) FROM orderbook_deltas),"
            " (SELECT min(snapshot_ts) FROM orderbook_snapshots WHERE source = 'ws'))"
        )[0][0]
        return None if value is None else int(value)

    def digests(self, table: KeyedTable, low: int, high: int) -> dict[int, tuple[int, int]]:
        """``bucket -> (events, identity hash sum)`` of ``low < time <= high``."""
        rows = self._query(digest_sql(table), (DIGEST_BUCKET_US, low, high))
        return {int(b): (int(n), int(h)) for b, n, h in rows}

    def next_time(self, table: KeyedTable, after: int) -> int | None:
        """The first time after ``after`` with a row, ``None`` when there is none."""
        where = f"{table.time} > %s" + (f" AND {table.filter}" if table.filter else "")
        value = self._query(f"SELECT min({table.time}) FROM {table.name} WHERE {where}", (after,))
        return None if value[0][0] is None else int(value[0][0])

    def keyed_rows(self, table: KeyedTable, ranges: Sequence[tuple[int, int]]) -> list[Row]:
        """Rows with ``low < time <= high`` for any of ``ranges``, in key order."""
        if not ranges:
            return []
        spans = " OR ".join(f"({table.time} > %s AND {table.time} <= %s)" for _ in ranges)
        where = f"({spans})" + (f" AND {table.filter}" if table.filter else "")
        params = [bound for span in ranges for bound in span]
        return self._rows(table.name, _select(table.name, where, ", ".join(table.key)), params)

    def latest_deltas(self, low: int, high: int) -> dict[str, int]:
        """Per market, the newest delta time with ``low < exchange_ts <= high``."""
        rows = self._query(
            "SELECT ticker, max(exchange_ts) FROM orderbook_deltas"
            " WHERE exchange_ts > %s AND exchange_ts <= %s GROUP BY ticker",
            (low, high),
        )
        return {str(ticker): int(at) for ticker, at in rows}

    def deltas_of(self, tickers: Sequence[str], low: int, high: int) -> list[DeltaRow]:
        """Deltas of ``tickers`` with ``low < exchange_ts <= high``, in frame order."""
        statement = _select(
            "orderbook_deltas",
            "exchange_ts > %s AND exchange_ts <= %s AND ticker = ANY(%s)",
            "conn_id, frame_no",
        )
        return self._rows("orderbook_deltas", statement, (low, high, list(tickers)))  # type: ignore[return-value]

    def snapshots_between(self, low: int, high: int) -> list[SnapshotRow]:
        """WebSocket snapshots with ``low < snapshot_ts <= high``."""
        statement = _select(
            "orderbook_snapshots",
            "source = 'ws' AND snapshot_ts > %s AND snapshot_ts <= %s",
            "conn_id, frame_no",
        )
        return self._rows("orderbook_snapshots", statement, (low, high))  # type: ignore[return-value]

    def gaps_since(self, since: int) -> list[GapRow]:
        statement = _select("gaps", "start_ts >= %s", "start_ts")
        return self._rows("gaps", statement, (since,))  # type: ignore[return-value]

    def market_history(
        self, ticker: str, since: int | None, high: int
    ) -> tuple[list[SnapshotRow], list[DeltaRow], list[GapRow]]:
        """The WS snapshots, deltas and gaps of ``ticker`` from its last snapshot at or
        before ``since`` (from the beginning when ``None`` or there is none) up to ``high``."""
        anchor = 0
        if since is not None:
            found = self._query(
                "SELECT max(snapshot_ts) FROM orderbook_snapshots"
                " WHERE ticker = %s AND source = 'ws' AND snapshot_ts <= %s",
                (ticker, since),
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
                "ticker = %s AND exchange_ts >= %s AND exchange_ts <= %s",
                "conn_id, frame_no",
            ),
            (ticker, anchor - HISTORY_SLACK_US, high),
        )
        return snapshots, deltas, self.gaps_since(anchor)  # type: ignore[return-value]
