"""Pure: production rows -> Parquet bytes (pyarrow, zstd), one schema per table.

Tables other than ``orderbook_deltas`` are written column for column as stored (JSON as
text). ``orderbook_deltas`` is written as the market's *book stream* for the window, so a
file can be read alone:

==============  =========================================================================
``kind``        ``start``: the market's book when the window opens (one row per level,
                or one row with null side/price/size for an empty book), written for every
                market whose first row in the window is a delta; ``snapshot``: a resync
                snapshot of the merged stream (one row per level, or one null row);
                ``delta``: a merged delta (``size`` is the signed change)
``seq``         the merged stream's sequence number (null for ``start`` rows)
==============  =========================================================================

To rebuild a book: take the rows of one ticker in file order; a run of ``start`` or
``snapshot`` rows (same ``seq``) replaces the book, each ``delta`` adds ``size`` at
``(side, price)``.

Times (``*_ts``, ``received_at``, ``updated_at``, ``open_time``, ``close_time``) are
``timestamp[us, tz=UTC]``: the stored µs exactly (files written before this were plain
``int64`` µs; :func:`integer_times` turns either into ``int64`` µs). Every field's unit is in
its field metadata (``unit``) and all of them in the schema metadata ``kalshi.units`` (JSON).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from kalshi.book import OrderBook
from kalshi.models.rows import DeltaRow, MarketRow, Row, SnapshotRow
from kalshi.store import TABLES

__all__ = [
    "BOOK_STREAM",
    "MARKETS",
    "PartWriter",
    "book_stream_rows",
    "encode",
    "integer_times",
    "market_rows",
    "schema",
]

_ARROW = {"int8": pa.int64(), "int4": pa.int32(), "text": pa.string(), "bool": pa.bool_()}
TIME = pa.timestamp("us", tz="UTC")
"""The type of every time column: µs since the Unix epoch, UTC."""

_TIMES = frozenset({"received_at", "updated_at", "open_time", "close_time"})
_PRICES = frozenset({"price", "yes_bid", "yes_ask", "last_price"})
_SIZES = frozenset({"size", "size_delta", "volume", "open_interest"})
_UNITS = {
    "price": "hundred-thousandths of a dollar (42000 = $0.42, 100000 = $1)",
    "size": "hundredths of a contract (13600 = 136.00 contracts)",
    "dollars": "whole dollars, as the exchange sends them",
    "levels": "JSON text [[price, size], ...]: price in hundred-thousandths of a dollar,"
    " size in hundredths of a contract",
    "side": "true = yes, false = no",
    "time": "microseconds since the Unix epoch, UTC",
}


def _is_time(column: str) -> bool:
    return column.endswith("_ts") or column in _TIMES


def _unit(column: str) -> str | None:
    if _is_time(column):
        return _UNITS["time"]
    if column in _PRICES:
        return _UNITS["price"]
    if column in _SIZES or column.endswith("_size"):
        return _UNITS["size"]
    if column.startswith("dollar_"):
        return _UNITS["dollars"]
    if column in ("yes_bids", "no_bids"):
        return _UNITS["levels"]
    if column in ("side", "taker_side"):
        return _UNITS["side"]
    return None


def _schema(columns: Sequence[tuple[str, pa.DataType]]) -> pa.Schema:
    fields = []
    units: dict[str, str] = {}
    for name, kind in columns:
        unit = _unit(name)
        if unit is not None:
            units[name] = unit
        fields.append(
            pa.field(
                name,
                TIME if _is_time(name) else kind,
                metadata=None if unit is None else {"unit": unit},
            )
        )
    return pa.schema(fields, metadata={"kalshi.units": json.dumps(units)})


BOOK_STREAM = _schema(
    [
        ("ticker", pa.string()),
        ("seq", pa.int64()),
        ("kind", pa.string()),
        ("exchange_ts", pa.int64()),
        ("received_at", pa.int64()),
        ("side", pa.bool_()),
        ("price", pa.int32()),
        ("size", pa.int64()),
        ("gatherer_id", pa.string()),
        ("conn_id", pa.int64()),
        ("frame_no", pa.int64()),
    ]
)

StreamRow = tuple[Any, ...]  # in BOOK_STREAM column order

# The markets table as the export writes it: its columns, then what a reader needs from the
# exchange's object (``payload``) as its own columns, each value exactly as the exchange
# sent it (JSON text of a number or string; null when absent).
MARKET_FIELDS = ("result", "strike_type", "floor_strike", "cap_strike", "settlement_value")
MARKETS = _schema(
    [
        ("ticker", pa.string()),
        ("event_ticker", pa.string()),
        ("status", pa.string()),
        ("market_type", pa.string()),
        ("title", pa.string()),
        ("open_time", pa.int64()),
        ("close_time", pa.int64()),
        ("updated_at", pa.int64()),
        ("gatherer_id", pa.string()),
        ("payload", pa.string()),
        *((name, pa.string()) for name in MARKET_FIELDS),
    ]
)


def market_rows(rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    """``markets`` rows (:class:`~kalshi.models.rows.MarketRow`) in :data:`MARKETS` column
    order: the row, then :data:`MARKET_FIELDS` from its payload (a number as its JSON
    text, e.g. ``"60"`` or ``"59.5"``, never a float; a string as is)."""
    out = []
    for row in rows:
        assert isinstance(row, MarketRow)
        payload = orjson.loads(row.payload) if row.payload else {}
        extra = []
        for name in MARKET_FIELDS:
            value = payload.get(name) if isinstance(payload, dict) else None
            if name == "settlement_value" and value is None and isinstance(payload, dict):
                value = payload.get("settlement_value_dollars")
            extra.append(
                None
                if value is None or value == ""
                else value
                if isinstance(value, str)
                else orjson.dumps(value).decode()
            )
        out.append((*row, *extra))
    return out


def schema(table: str) -> pa.Schema:
    if table == "orderbook_deltas":
        return BOOK_STREAM
    if table == "markets":
        return MARKETS
    spec = TABLES[table]
    return _schema(
        [
            (c, pa.string() if t == "jsonb" else _ARROW[t])
            for c, t in zip(spec.columns, spec.types, strict=True)
        ]
    )


def integer_times(table: pa.Table) -> pa.Table:
    """``table`` with every ``timestamp`` column as ``int64`` µs since the epoch (exact):
    the stored form, for files of any export version (older ones were ``int64`` already)."""
    fields = [
        pa.field(f.name, pa.int64(), metadata=f.metadata) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _levels(
    ticker: str, seq: int | None, kind: str, at: int, book: OrderBook, who: tuple[Any, ...]
) -> list[StreamRow]:
    levels = [(True, p, s) for p, s in sorted(book.yes.items())]
    levels += [(False, p, s) for p, s in sorted(book.no.items())]
    if not levels:
        return [(ticker, seq, kind, at, who[0], None, None, None, *who[1:])]
    return [(ticker, seq, kind, at, who[0], side, p, s, *who[1:]) for side, p, s in levels]


def book_stream_rows(
    start: int,
    books: dict[str, OrderBook],
    stream: Sequence[DeltaRow | SnapshotRow],
    snapshot_book: Any,
    seen: set[str] | None = None,
) -> list[StreamRow]:
    """The book stream of one window: ``stream`` is the window's deltas and snapshots
    ordered by (ticker, seq), or a step of them; ``books`` the book at the window start of
    every market whose first row is a delta; ``snapshot_book(row)`` turns a snapshot row
    into an OrderBook; ``seen``: the markets whose rows came in an earlier step (no
    ``start`` rows again), updated with this step's."""
    out: list[StreamRow] = []
    seen = set() if seen is None else seen
    for row in stream:
        if row.ticker not in seen:
            seen.add(row.ticker)
            if isinstance(row, DeltaRow):
                out += _levels(
                    row.ticker, None, "start", start, books[row.ticker], (None, None, None, None)
                )
        if isinstance(row, SnapshotRow):
            at = row.exchange_ts if row.exchange_ts is not None else row.snapshot_ts
            who = (row.received_at, row.gatherer_id, row.conn_id, row.frame_no)
            out += _levels(row.ticker, row.seq, "snapshot", at, snapshot_book(row), who)
        else:
            out.append(
                (
                    row.ticker,
                    row.seq,
                    "delta",
                    row.exchange_ts,
                    row.received_at,
                    row.side,
                    row.price,
                    row.size_delta,
                    row.gatherer_id,
                    row.conn_id,
                    row.frame_no,
                )
            )
    return out


def _arrow(target: pa.Schema, rows: Iterable[Row] | Iterable[StreamRow]) -> pa.Table:
    columns: list[list[Any]] = [[] for _ in target.names]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    arrays = [pa.array(c, type=f.type) for c, f in zip(columns, target, strict=True)]
    return pa.Table.from_arrays(arrays, schema=target)


def encode(table: str, rows: Iterable[Row] | Iterable[StreamRow]) -> bytes:
    """One Parquet file (zstd) of ``rows`` in ``table``'s export schema."""
    target = schema(table)
    sink = io.BytesIO()
    pq.write_table(_arrow(target, rows), sink, compression="zstd")
    return sink.getvalue()


class PartWriter:
    """One Parquet file (zstd) of ``table``'s export schema written a batch at a time:
    each :meth:`write` is one row group, so only that batch's rows are Python objects at
    once (the file so far is held compressed). :meth:`finish` gives the file's bytes."""

    def __init__(self, table: str) -> None:
        self._schema = schema(table)
        self._sink = pa.BufferOutputStream()
        self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd")
        self.rows = 0

    def write(self, rows: Sequence[Row] | Sequence[tuple[Any, ...]]) -> None:
        self._writer.write_table(_arrow(self._schema, rows))
        self.rows += len(rows)

    def finish(self) -> bytes:
        if self.rows == 0:
            self._writer.write_table(_arrow(self._schema, []))
        self._writer.close()
        return bytes(self._sink.getvalue().to_pybytes())
