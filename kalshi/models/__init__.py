"""Plain, exact values: no I/O, no trio. Prices and sizes are integers (see ``units``)."""

from kalshi.models.book import BookDelta, BookSnapshot, Level, Side
from kalshi.models.control import (
    Command,
    ErrorReply,
    OkReply,
    Subscribed,
    SubscriptionInfo,
    SubscriptionList,
    Unsubscribed,
)
from kalshi.models.frames import Body, Decoded, Invalid, Message, Unrecognized
from kalshi.models.lifecycle import EventFeeUpdate, EventLifecycle, LifecycleEvent
from kalshi.models.market import Event, Market, MarketStatus, PriceRange, Series
from kalshi.models.rows import (
    TABLE_COLUMNS,
    DeltaRow,
    GapRow,
    LifecycleRow,
    MarketRow,
    Row,
    SnapshotRow,
    TickerRow,
    TradeRow,
)
from kalshi.models.ticker import Ticker
from kalshi.models.trade import Trade

__all__ = [
    "TABLE_COLUMNS",
    "Body",
    "BookDelta",
    "BookSnapshot",
    "Command",
    "Decoded",
    "DeltaRow",
    "ErrorReply",
    "Event",
    "EventFeeUpdate",
    "EventLifecycle",
    "GapRow",
    "Invalid",
    "Level",
    "LifecycleEvent",
    "LifecycleRow",
    "Market",
    "MarketRow",
    "MarketStatus",
    "Message",
    "OkReply",
    "PriceRange",
    "Row",
    "Series",
    "Side",
    "SnapshotRow",
    "Subscribed",
    "SubscriptionInfo",
    "SubscriptionList",
    "Ticker",
    "TickerRow",
    "Trade",
    "TradeRow",
    "Unrecognized",
    "Unsubscribed",
]
