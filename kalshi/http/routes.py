"""Handlers for ``/health``, ``/debug/markets`` and ``/metrics``.

The handlers serialize exactly what the service's callables return and nothing else, so
what an endpoint can show is decided by the service (no config, no secrets, by design).
Callables may be plain functions or coroutine functions.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kalshi.http.server import Handler, Request, Response, json_response
from kalshi.models.market import MarketStatus

__all__ = [
    "DEBUG_MARKETS_MAX_LIMIT",
    "DebugMarkets",
    "Health",
    "debug_markets_route",
    "health_route",
    "metrics_route",
]

T = TypeVar("T")

Health = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]
"""Returns the health document; HTTP 200 when its ``status`` is ``"ok"``, else 503."""

DebugMarkets = Callable[
    [str | None, str | None, int, str | None],
    Mapping[str, Any] | Awaitable[Mapping[str, Any]],
]
"""``(status, prefix, limit, cursor) -> page``; raise ``ValueError`` for a bad cursor (400)."""

DEBUG_MARKETS_DEFAULT_LIMIT = 100
DEBUG_MARKETS_MAX_LIMIT = 1000
_TOKEN = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_CURSOR = re.compile(r"[!-~]{1,512}")  # opaque to us: any visible ASCII


async def _call(function: Callable[..., T | Awaitable[T]], *args: object) -> T:
    result = function(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def health_route(health: Health) -> Handler:
    """``/health``: the document as JSON, 200 when ``status == "ok"``, 503 otherwise."""

    async def handle(request: Request) -> Response:
        document = await _call(health)
        return json_response(200 if document.get("status") == "ok" else 503, document)

    return handle


class _BadParameter(ValueError):
    pass


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise _BadParameter(f"{name}: given {len(values)} times")
    return values[0]


def _token(query: Mapping[str, list[str]], name: str) -> str | None:
    value = _single(query, name)
    if value is None or value == "":
        return None
    if not _TOKEN.fullmatch(value):
        raise _BadParameter(f"{name}: expected 1-128 of A-Z a-z 0-9 _ . -, got {value!r}")
    return value


def _cursor(query: Mapping[str, list[str]]) -> str | None:
    value = _single(query, "cursor")
    if value is None or value == "":
        return None
    if not _CURSOR.fullmatch(value):
        raise _BadParameter(f"cursor: expected 1-512 visible ASCII characters, got {value!r}")
    return value


def _limit(query: Mapping[str, list[str]]) -> int:
    value = _single(query, "limit")
    if value is None or value == "":
        return DEBUG_MARKETS_DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= DEBUG_MARKETS_MAX_LIMIT:
        raise _BadParameter(
            f"limit: expected an integer from 1 to {DEBUG_MARKETS_MAX_LIMIT}, got {value!r}"
        )
    return int(value)


_DEBUG_PARAMETERS = frozenset({"status", "prefix", "limit", "cursor"})
_STATUSES = tuple(s.value for s in MarketStatus)  # Market.status (kalshi-api.md, "Market object")


def debug_markets_route(debug_markets: DebugMarkets) -> Handler:
    """``/debug/markets?status=&prefix=&limit=&cursor=``: one page of the market registry.

    ``status`` (a Market.status: ``active``, ``finalized``, ...) and ``prefix`` (1-128 of
    ``A-Z a-z 0-9 _ . -``) filter, empty means no filter; ``limit`` is 1 to
    ``DEBUG_MARKETS_MAX_LIMIT`` (default 100), ``cursor`` is whatever the previous page
    returned (opaque, 1-512 visible ASCII characters). An unknown, repeated or malformed
    parameter, or a ``ValueError`` from the callable (a stale cursor), answers 400 with
    ``{"error": ...}``.
    """

    async def handle(request: Request) -> Response:
        try:
            unknown = sorted(set(request.query) - _DEBUG_PARAMETERS)
            if unknown:
                raise _BadParameter(f"unknown parameter {unknown[0]!r}")
            status = _token(request.query, "status")
            if status is not None and status not in _STATUSES:
                raise _BadParameter(
                    f"status: expected one of {', '.join(_STATUSES)}, got {status!r}"
                )
            prefix = _token(request.query, "prefix")
            limit = _limit(request.query)
            cursor = _cursor(request.query)
            page = await _call(debug_markets, status, prefix, limit, cursor)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, page)

    return handle


def metrics_route(registry: CollectorRegistry = REGISTRY) -> Handler:
    """``/metrics``: ``registry`` (the default one) in the format the scraper's ``Accept``
    asks for, as prometheus_client negotiates it: without one, ``generate_latest`` as
    ``text/plain; version=0.0.4``; OpenMetrics when asked."""

    async def handle(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(200, encode(registry), content_type=content_type)

    return handle
