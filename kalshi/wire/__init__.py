"""Pure codecs between Kalshi's JSON and our models: the only place that knows field names."""

from kalshi.models.paths import REST_ROOT, WS_PATH
from kalshi.wire.rest import (
    decode_event,
    decode_events_page,
    decode_exchange_status,
    decode_market,
    decode_markets_page,
    decode_orderbook,
    decode_orderbooks,
    decode_series,
    decode_trades_page,
)
from kalshi.wire.ws import (
    CHANNELS,
    decode_ws,
    encode_command,
    list_subscriptions_cmd,
    subscribe_cmd,
    unsubscribe_cmd,
    update_subscription_cmd,
)

__all__ = [
    "CHANNELS",
    "REST_ROOT",
    "WS_PATH",
    "decode_event",
    "decode_events_page",
    "decode_exchange_status",
    "decode_market",
    "decode_markets_page",
    "decode_orderbook",
    "decode_orderbooks",
    "decode_series",
    "decode_trades_page",
    "decode_ws",
    "encode_command",
    "list_subscriptions_cmd",
    "subscribe_cmd",
    "unsubscribe_cmd",
    "update_subscription_cmd",
]
