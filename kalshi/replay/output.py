"""Replayed rows as text: JSON lines (every table) or CSV (one table), to a binary stream.

Values are the database columns exactly: integers in our units (prices in 1e-5 dollars,
sizes in 1e-2 contracts, times in µs), booleans, and JSON columns embedded as JSON.
"""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

import orjson

from kalshi.models.rows import TABLE_COLUMNS, Row
from kalshi.store.schema import TABLES

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


class JsonlSink(_BufferedSink):
    """One JSON object per row: ``{"table": ..., <column>: <value>, ...}``."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream)
        self._json = {name: tuple(spec.json_columns) for name, spec in TABLES.items()}
        # '{"table":"<name>",': the row's own object follows without its opening brace
        self._prefix = {name: b'{"table":%s,' % orjson.dumps(name) for name in TABLES}

    async def put_all(self, rows: list[tuple[str, Row]]) -> None:
        if rows:
            self._add(b"".join([self.encode(table, row) for table, row in rows]))

    def encode(self, table: str, row: Row) -> bytes:
        obj: dict[str, object] = dict(zip(TABLE_COLUMNS[table], row, strict=True))
        for name in self._json[table]:
            obj[name] = orjson.Fragment(str(obj[name]))
        return self._prefix[table] + orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)[1:]


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
