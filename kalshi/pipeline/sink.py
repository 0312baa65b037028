"""Handing rows to the store's writers: the last step of the pipeline, shared by the live
gatherer and ``kalshi replay``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol

import trio

from kalshi.models.rows import Row

__all__ = ["RowChannel", "RowSink", "Sink"]


class Sink(Protocol):
    """Where the pipeline's rows go: :class:`RowSink` (the store's writers), or replay's
    JSON lines and CSV outputs. ``rows`` are ``(table, row)`` in the order to write them."""

    async def put_all(self, rows: list[tuple[str, Row]]) -> None: ...


class RowChannel(Protocol):
    """What a writer's channel offers (``kalshi.store.RowSender``, or a plain
    ``trio.MemorySendChannel[Row]``)."""

    def send_nowait(self, row: Row, /) -> None: ...

    async def send(self, row: Row, /) -> None: ...

    async def aclose(self) -> None: ...


class RowSink:
    """The :class:`Sink` onto the writers' channels: ``send_nowait`` on the hot path,
    waiting only when a channel is full (backpressure reaches the socket, nothing is
    dropped)."""

    def __init__(self, channels: Mapping[str, RowChannel]) -> None:
        self.channels = channels
        self.rows: Counter[str] = Counter()

    async def put(self, table: str, row: Row) -> None:
        channel = self.channels[table]
        self.rows[table] += 1
        try:
            channel.send_nowait(row)
        except trio.WouldBlock:
            await channel.send(row)

    async def put_all(self, rows: list[tuple[str, Row]]) -> None:
        """:meth:`put` of each row, inlined: the receive loop calls this once a frame."""
        channels, counts = self.channels, self.rows
        for table, row in rows:
            channel = channels[table]
            counts[table] += 1
            try:
                channel.send_nowait(row)
            except trio.WouldBlock:
                await channel.send(row)

    def put_ready(self, rows: list[tuple[str, Row]]) -> int:
        """Hand over ``rows`` in order while their channels have room, without waiting;
        returns how many were handed (the rest, ``rows[n:]``, go through
        :meth:`put_all`, which waits for room)."""
        channels, counts = self.channels, self.rows
        for n, (table, row) in enumerate(rows):
            try:
                channels[table].send_nowait(row)
            except trio.WouldBlock:
                return n
            counts[table] += 1
        return len(rows)

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()
