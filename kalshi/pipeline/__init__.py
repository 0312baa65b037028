"""The pure frame pipeline: raw WebSocket frame -> rows, shared by live gathering
(:mod:`kalshi.gather`) and ``kalshi replay`` (:mod:`kalshi.replay`). No I/O, no clock."""

from kalshi.pipeline.frames import (
    CONTROL_TYPES,
    TYPE_CHANNEL,
    FrameProcessor,
    Outcome,
    book_json,
    trade_row,
)
from kalshi.pipeline.sink import RowChannel, RowSink, Sink

__all__ = [
    "CONTROL_TYPES",
    "TYPE_CHANNEL",
    "FrameProcessor",
    "Outcome",
    "RowChannel",
    "RowSink",
    "Sink",
    "book_json",
    "trade_row",
]
