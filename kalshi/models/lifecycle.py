"""``market_lifecycle_v2`` / ``event_lifecycle`` / ``event_fee_update`` messages."""

from __future__ import annotations

from attrs import frozen

from kalshi.models.market import PriceRange

__all__ = ["EventFeeUpdate", "EventLifecycle", "LifecycleEvent"]


@frozen
class LifecycleEvent:
    """A market state change. Times in microseconds; ``settlement_value`` in
    hundred-thousandths; ``metadata`` is ``additional_metadata`` as sent (``created``)."""

    ticker: str
    event_type: str
    event_ticker: str = ""
    open_ts: int | None = None
    close_ts: int | None = None
    determination_ts: int | None = None
    settled_ts: int | None = None
    result: str = ""
    settlement_value: int | None = None
    is_deactivated: bool | None = None
    exchange_index: int | None = None
    price_level_structure: str = ""
    price_ranges: tuple[PriceRange, ...] = ()
    title: str = ""
    multivariate: bool = False


@frozen
class EventLifecycle:
    """A new event (``event_lifecycle``)."""

    event_ticker: str
    series_ticker: str
    title: str = ""
    subtitle: str = ""
    collateral_return_type: str = ""
    exchange_index: int = 0
    strike_date: int | None = None
    strike_period: str = ""


@frozen
class EventFeeUpdate:
    event_ticker: str
    fee_type_override: str | None = None
    fee_multiplier_override: str | None = None
