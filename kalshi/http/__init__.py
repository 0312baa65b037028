"""Serving: the one HTTP layer and the one Kalshi WebSocket server protocol.

* :func:`serve_endpoints` -- what a service calls: ``/health``, ``/debug/markets`` and
  ``/metrics`` on both servers from its config.
* :func:`serve_http` -- one server for a route table (tests bind ``port=None``).
* :func:`health_route`, :func:`debug_markets_route`, :func:`metrics_route` -- handlers.
* :class:`HttpServer` -- the h11 request loop every server runs (routes or one handler,
  :class:`Limits`, WebSocket upgrades); the simulator's REST port is one.
* :mod:`kalshi.http.ws` -- the server side of the Kalshi WebSocket protocol
  (kalshi-api.md §2), fed by the simulator or by a recording (``replay --serve``).
"""

from kalshi.http.routes import (
    DEBUG_MARKETS_MAX_LIMIT,
    DebugMarkets,
    Health,
    debug_markets_route,
    health_route,
    metrics_route,
)
from kalshi.http.server import (
    UNBOUNDED,
    Handler,
    HttpServer,
    Limits,
    Listening,
    Request,
    Response,
    Upgrade,
    WebSocketHandler,
    json_response,
    listen,
    open_http_listeners,
    serve_http,
    serve_http_listeners,
)
from kalshi.http.service import Endpoints, Port, check_ports, endpoint_ports, serve_endpoints

__all__ = [
    "DEBUG_MARKETS_MAX_LIMIT",
    "UNBOUNDED",
    "DebugMarkets",
    "Endpoints",
    "Handler",
    "Health",
    "HttpServer",
    "Limits",
    "Listening",
    "Port",
    "Request",
    "Response",
    "Upgrade",
    "WebSocketHandler",
    "check_ports",
    "debug_markets_route",
    "endpoint_ports",
    "health_route",
    "json_response",
    "listen",
    "metrics_route",
    "open_http_listeners",
    "serve_endpoints",
    "serve_http",
    "serve_http_listeners",
]
