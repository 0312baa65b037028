"""Replay a journal through the live pipeline; rebuild an order book at any past time.

:func:`replay` feeds journal records to the same :class:`~kalshi.pipeline.FrameProcessor`
the gatherer uses (rows identical to the live run, identity keys included) into any sink:
the database (:class:`~kalshi.pipeline.RowSink` over ``Store`` channels), JSON lines
or CSV. :func:`serve_recording` re-serves a journal as a Kalshi-compatible WebSocket.
``book_from_*`` answer ``kalshi snapshot``. See ``docs/replay.md``.
"""

from kalshi.replay.core import Replayer, ReplayFilter, ReplayStats, replay, replay_into_db
from kalshi.replay.output import CsvSink, JsonlSink
from kalshi.replay.pointintime import (
    BookAt,
    NoBook,
    book_from_db,
    book_from_journal,
    book_from_rest,
    latest_ticker,
)
from kalshi.replay.view import book_document, book_table

__all__ = [
    "BookAt",
    "CsvSink",
    "JsonlSink",
    "NoBook",
    "ReplayFilter",
    "ReplayStats",
    "Replayer",
    "book_document",
    "book_from_db",
    "book_from_journal",
    "book_from_rest",
    "book_table",
    "latest_ticker",
    "replay",
    "replay_into_db",
]
