"""Reference data: series, events and markets (REST and lifecycle)."""

from __future__ import annotations

from enum import StrEnum

from attrs import frozen

__all__ = ["Event", "Market", "MarketStatus", "PriceRange", "Series"]


class MarketStatus(StrEnum):
    """Market.status values of the current API."""

    INITIALIZED = "initialized"
    INACTIVE = "inactive"
    ACTIVE = "active"
    CLOSED = "closed"
    DETERMINED = "determined"
    DISPUTED = "disputed"
    AMENDED = "amended"
    FINALIZED = "finalized"


@frozen
class PriceRange:
    """One band of a market's price grid (prices in hundred-thousandths)."""

    start: int
    end: int
    step: int


@frozen
class Series:
    ticker: str
    title: str = ""
    category: str = ""
    frequency: str = ""
    tags: tuple[str, ...] = ()


@frozen
class Event:
    event_ticker: str
    series_ticker: str
    title: str = ""
    sub_title: str = ""
    mutually_exclusive: bool = False
    exchange_index: int = 0


@frozen
class Market:
    """A market as REST describes it. Prices in hundred-thousandths, sizes in hundredths,
    times in microseconds; ``None`` where the exchange sent nothing (or ``""``)."""

    ticker: str
    event_ticker: str
    status: str
    market_type: str = "binary"
    title: str = ""
    yes_sub_title: str = ""
    no_sub_title: str = ""
    created_time: int | None = None
    updated_time: int | None = None
    open_time: int | None = None
    close_time: int | None = None
    latest_expiration_time: int | None = None
    yes_bid: int | None = None
    yes_ask: int | None = None
    no_bid: int | None = None
    no_ask: int | None = None
    last_price: int | None = None
    volume: int | None = None
    volume_24h: int | None = None
    open_interest: int | None = None
    result: str = ""
    price_level_structure: str = ""
    price_ranges: tuple[PriceRange, ...] = ()
    exchange_index: int = 0
    settlement_value: int | None = None
    # The exchange's whole object as received (JSON text: strikes, rules, settlement
    # fields and whatever else it sends); "" for a market first seen in a lifecycle event.
    raw: str = ""
