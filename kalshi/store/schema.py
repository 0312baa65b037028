"""What the writer needs to know about each table: column types, key, row class.

Column order and names come from :data:`kalshi.models.rows.TABLE_COLUMNS`; the types here
must match ``sql/002_tables.sql`` (``tests/db/test_migrate.py`` checks they do). JSONB
columns are staged as ``text`` and cast on insert, so rows carry JSON as plain ``str``.
"""

from __future__ import annotations

from typing import NamedTuple

from kalshi.models.rows import (
    TABLE_COLUMNS,
    DeltaRow,
    GapRow,
    LifecycleRow,
    MarketRow,
    Row,
    SnapshotRow,
    TickerRow,
    TradeRow,
)

__all__ = ["TABLES", "TableSpec"]


class TableSpec(NamedTuple):
    name: str
    row_type: type[Row]
    columns: tuple[str, ...]
    types: tuple[str, ...]  # PostgreSQL type of each column, as in the table
    key: tuple[str, ...]  # the unique index's columns/expressions: a row's identity
    upsert: bool  # markets: DO UPDATE instead of DO NOTHING
    # Batches committed one at a time, in the order their rows were received: the rows of
    # one key come from more than one source (markets: versions, the last one wins;
    # trades: WebSocket and a REST backfill, the first one wins), so the order of commits
    # decides what is stored, and a replay of the journal must store what the gatherer did.
    serial: bool = False
    # gaps: a column a later copy of a stored row may fill (its end_ts: the gap closes);
    # never changed once set, and no other column is
    closes: str | None = None

    @property
    def conflict(self) -> str:
        """The ``ON CONFLICT`` target, e.g. ``"(exchange_ts, trade_id)"``."""
        return f"({', '.join(self.key)})"

    @property
    def json_columns(self) -> frozenset[str]:
        return frozenset(c for c, t in zip(self.columns, self.types, strict=True) if t == "jsonb")

    @property
    def stage_types(self) -> tuple[str, ...]:
        """Types of the staging table (and of binary COPY): JSON travels as text."""
        return tuple("text" if t == "jsonb" else t for t in self.types)


_B, _I, _T, _BOOL, _J = "int8", "int4", "text", "bool", "jsonb"

_FRAME = ("exchange_ts", "gatherer_id", "conn_id", "frame_no")
"""The key of rows made from one WebSocket frame: its exchange time and where it was read."""


def _spec(
    name: str,
    row_type: type[Row],
    types: tuple[str, ...],
    key: tuple[str, ...],
    *,
    upsert: bool = False,
    serial: bool = False,
    closes: str | None = None,
) -> TableSpec:
    columns = TABLE_COLUMNS[name]
    assert len(columns) == len(types), name
    return TableSpec(name, row_type, columns, types, key, upsert, upsert or serial, closes)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "trades",
            TradeRow,
            (_B, _B, _T, _T, _T, _I, _B, _BOOL, _BOOL, _T, _B, _B, _B),
            ("exchange_ts", "trade_id"),
            serial=True,
        ),
        _spec(
            "orderbook_deltas",
            DeltaRow,
            (_B, _B, _T, _T, _BOOL, _I, _B, _B, _B, _B, _B),
            _FRAME,
        ),
        _spec(
            "orderbook_snapshots",
            SnapshotRow,
            (_B, _B, _B, _T, _T, _T, _J, _J, _B, _B, _B, _B),
            ("snapshot_ts", "gatherer_id", "ticker", "source", "conn_id", "frame_no"),
        ),
        _spec(
            "tickers",
            TickerRow,
            (_B, _B, _T, _T, _I, _I, _I, _B, _B, _B, _B, _B, _B, _B, _B, _B, _I),
            _FRAME,
        ),
        _spec(
            "market_lifecycle",
            LifecycleRow,
            (_B, _B, _T, _T, _T, _J, _B, _B, _B, _I),
            _FRAME,
        ),
        _spec(
            "markets",
            MarketRow,
            (_T, _T, _T, _T, _T, _B, _B, _B, _T, _J),
            ("ticker",),
            upsert=True,
        ),
        _spec(
            "gaps",
            GapRow,
            (_B, _B, _T, _B, _B, _T, _T, _B, _B, _T),
            (
                "start_ts",
                "gatherer_id",
                "conn_id",
                "(COALESCE(sid, 0))",
                "kind",
                "(COALESCE(ticker, ''))",
            ),
            closes="end_ts",
        ),
    )
}
