"""``/health``, ``/debug/markets`` and ``/metrics`` for the running services.

* :func:`serve_endpoints` -- what a service calls: both servers from its config.
* :func:`serve_http` -- one server for a route table (tests bind ``port=None``).
* :func:`health_route`, :func:`debug_markets_route`, :func:`metrics_route` -- handlers.
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
    Handler,
    Listening,
    Request,
    Response,
    json_response,
    open_http_listeners,
    serve_http,
    serve_http_listeners,
)
from kalshi.http.service import Endpoints, serve_endpoints

__all__ = [
    "DEBUG_MARKETS_MAX_LIMIT",
    "DebugMarkets",
    "Endpoints",
    "Handler",
    "Health",
    "Listening",
    "Request",
    "Response",
    "debug_markets_route",
    "health_route",
    "json_response",
    "metrics_route",
    "open_http_listeners",
    "serve_endpoints",
    "serve_http",
    "serve_http_listeners",
]
