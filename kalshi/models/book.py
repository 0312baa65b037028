"""Order-book messages. A level is ``(price, size)`` in exact integer units."""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ["BookDelta", "BookSnapshot", "Level", "Side"]

Level = tuple[int, int]


class Side(StrEnum):
    YES = "yes"
    NO = "no"


class BookSnapshot(msgspec.Struct, frozen=True, gc=False):
    """Full book of one market: bids only, ascending by price, as the exchange sends them.

    ``yes`` holds YES bids; ``no`` holds NO bids in NO-leg price (the default convention).
    """

    ticker: str
    market_id: str
    yes: tuple[Level, ...]
    no: tuple[Level, ...]


class BookDelta(msgspec.Struct, frozen=True, gc=False):
    """A change of one level: ``new size = old size + delta``; the level goes at 0.

    ``exchange_ts`` is microseconds: ``ts_ms`` refined by the µs of the RFC 3339 ``ts``
    (``kalshi.wire._fields.finest_us``; kalshi-api.md §3.1), or the legacy ``ts``; ``None``
    if absent.
    """

    ticker: str
    market_id: str
    side: Side
    price: int
    delta: int
    exchange_ts: int | None = None
