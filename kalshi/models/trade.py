"""Trades, from the ``trade`` channel or REST ``/markets/trades``."""

from __future__ import annotations

import msgspec

from kalshi.models.book import Side

__all__ = ["Trade"]


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One trade. ``yes_price``/``no_price`` in hundred-thousandths, ``count`` in hundredths,
    ``exchange_ts`` in microseconds. ``taker_side`` is the taker's outcome side."""

    trade_id: str
    ticker: str
    yes_price: int
    no_price: int
    count: int
    taker_side: Side
    exchange_ts: int
    is_block_trade: bool = False
