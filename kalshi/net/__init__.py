"""The only package that opens sockets: WebSocket transports and the REST client."""

from kalshi.net.clock import WallClock, mono_us, system_wall_us, trio_wall_us
from kalshi.net.rest import RestClient, TokenBucket
from kalshi.net.ws import TRANSPORTS, Connector, WsConnection, get_transport
from kalshi.retry import Backoff

__all__ = [
    "TRANSPORTS",
    "Backoff",
    "Connector",
    "RestClient",
    "TokenBucket",
    "WallClock",
    "WsConnection",
    "get_transport",
    "mono_us",
    "system_wall_us",
    "trio_wall_us",
]
