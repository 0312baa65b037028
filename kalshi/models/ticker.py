"""The ``ticker`` channel (unsequenced)."""

from __future__ import annotations

import msgspec

__all__ = ["Ticker"]


class Ticker(msgspec.Struct, frozen=True, gc=False):
    """Top of book and totals for one market. Prices in hundred-thousandths (``None`` when the
    exchange sent ``""``), sizes in hundredths, dollar totals in whole dollars, time in µs."""

    ticker: str
    market_id: str
    price: int | None
    yes_bid: int | None
    yes_ask: int | None
    volume: int | None
    open_interest: int | None
    dollar_volume: int | None
    dollar_open_interest: int | None
    yes_bid_size: int | None
    yes_ask_size: int | None
    last_trade_size: int | None
    exchange_ts: int
