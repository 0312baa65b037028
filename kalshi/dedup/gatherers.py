"""Reads from one gatherer's database (blocking; called from worker threads).

Rows come back as the NamedTuples of :mod:`kalshi.models.rows` (JSON as text). The
connection is opened lazily and dropped after an error, so an unreachable database costs
one failed connect per pass and is picked up again when it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kalshi.config import GathererSource
from kalshi.dedup.tables import KeyedTable
from kalshi.errors import StoreError
from kalshi.models.rows import DeltaRow, GapRow, Row, SnapshotRow
from kalshi.store import Database, connect_db
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
        self._db: Database | None = None

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._db is None:
            self._db = connect_db(self.url)
        try:
            return self._db.query(statement, params)
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

    def keyed_rows(
        self, table: KeyedTable, after: Sequence[Any] | None, horizon: int, limit: int
    ) -> list[Row]:
        """Rows with key > ``after`` and time <= ``horizon``, in key order."""
        key = ", ".join(table.key)
        where = [f"{table.time} <= %s"]
        params: list[Any] = [horizon]
        if after is not None:
            where.append(f"({key}) > ({', '.join(['%s'] * len(table.key))})")
            params.extend(after)
        if table.filter:
            where.append(table.filter)
        return self._rows(table.name, _select(table.name, " AND ".join(where), key, limit), params)

    def deltas_between(self, low: int, high: int) -> list[DeltaRow]:
        """Deltas with ``low < exchange_ts <= high``."""
        statement = _select(
            "orderbook_deltas", "exchange_ts > %s AND exchange_ts <= %s", "conn_id, frame_no"
        )
        return self._rows("orderbook_deltas", statement, (low, high))  # type: ignore[return-value]

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
