"""Replayed rows as text: JSON lines (every table) or CSV (one table), to a binary stream.

Values are the database columns exactly: integers in our units (prices in 1e-5 dollars,
sizes in 1e-2 contracts, times in µs), booleans, and JSON columns embedded as JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, BinaryIO

import msgspec

from kalshi.models.rows import TABLE_COLUMNS, Row
from kalshi.store import TABLES

__all__ = ["CsvSink", "JsonlSink"]

_FLUSH_BYTES = 1 << 16


class _BufferedSink:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._parts: list[bytes] = []
        self._size = 0

    def _add(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self.stream.write(b"".join(self._parts))
            self._parts.clear()
            self._size = 0
        self.stream.flush()


def _row_struct(table: str) -> type[msgspec.Struct]:
    """A struct of ``table``, first member the table's name: encodes in column order."""
    fields = [("table", str), *((name, Any) for name in TABLE_COLUMNS[table])]
    return msgspec.defstruct(f"_{table}_line", fields, gc=False)


class JsonlSink(_BufferedSink):
    """One JSON object per row: ``{"table": ..., <column>: <value>, ...}``.

    Each row becomes a ``msgspec`` struct of its table and a batch of them is encoded as
    lines by one call (no per-row dict); JSON columns are embedded as they are."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream)
        self._json = {
            name: tuple(spec.columns.index(c) for c in spec.json_columns)
            for name, spec in TABLES.items()
        }
        self._structs = {name: _row_struct(name) for name in TABLES}
        self._encoder = msgspec.json.Encoder()

    async def put_all(self, rows: list[tuple[str, Row]]) -> None:
        if rows:
            self._add(self.encode_all(rows))

    def encode_all(self, rows: Iterable[tuple[str, Row]]) -> bytes:
        """The lines of ``rows``, each with its newline (one ``encode_lines`` call)."""
        structs, json, raw_json = self._structs, self._json, self._raw_json
        return self._encoder.encode_lines(
            [
                structs[table](table, *(raw_json(table, row) if json[table] else row))
                for table, row in rows
            ]
        )

    def encode(self, table: str, row: Row) -> bytes:
        """One row's line, with its newline."""
        return self.encode_all([(table, row)])

    def _raw_json(self, table: str, row: Row) -> list[Any]:
        values: list[Any] = list(row)
        for index in self._json[table]:
            values[index] = msgspec.Raw(str(values[index]))
        return values


class CsvSink(_BufferedSink):
    """CSV of one table with a header line; empty field for NULL, ``true``/``false``."""

    def __init__(self, stream: BinaryIO, table: str) -> None:
        super().__init__(stream)
        self.table = table
        self._text = io.StringIO()
        self._writer = csv.writer(self._text, lineterminator="\n")
        self._writer.writerow(TABLE_COLUMNS[table])
        self._drain()

    def _drain(self) -> None:
        self._add(self._text.getvalue().encode())
        self._text.seek(0)
        self._text.truncate()

    async def put_all(self, rows: list[tuple[str, Row]]) -> None:
        writer = self._writer
        for table, row in rows:
            if table == self.table:
                writer.writerow(_csv_value(v) for v in row)
        self._drain()


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value
