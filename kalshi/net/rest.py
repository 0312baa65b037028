"""The REST client: signed GETs under a token bucket, retried on 429/5xx/transport errors.

Only this module talks HTTP to the exchange. It moves bytes: every body is decoded in one
place, :mod:`kalshi.wire.rest` (JSON parsing included), whose :class:`DecodeError` names the
field and value that do not fit, prefixed here with the request (``GET /markets: ...``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import trio

from kalshi.auth import Signer
from kalshi.errors import (
    ConnectionLost,
    DecodeError,
    HttpError,
    PaginationError,
    RateLimited,
)
from kalshi.models.book import BookSnapshot
from kalshi.models.market import Market
from kalshi.models.trade import Trade
from kalshi.net.clock import WallClock, clock_hint, system_wall_us
from kalshi.retry import retry
from kalshi.wire import (
    decode_markets_page,
    decode_orderbook,
    decode_orderbooks,
    decode_trades_page,
)

__all__ = ["MAX_PAGES", "Pages", "RestClient", "TokenBucket"]

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_PAGES = 100_000
"""Pages one paginated call may take (10^8 items at 1000 a page) before it is an error."""


class Pages:
    """The cursor of one paginated call: ``advance(cursor)`` takes each page's cursor and
    answers whether another page follows (a non-empty cursor; ``""``, null and absent all
    end, kalshi-api.md open question 6). Raises :class:`PaginationError` when a cursor
    repeats (the exchange would loop) or past ``max_pages`` pages."""

    __slots__ = ("_seen", "cursor", "max_pages", "pages", "path")

    def __init__(self, path: str, max_pages: int = MAX_PAGES) -> None:
        self.path = path
        self.max_pages = max_pages
        self.cursor: str | None = None
        self.pages = 0
        self._seen: set[str] = set()

    def advance(self, cursor: str | None) -> bool:
        self.pages += 1
        if not cursor:
            return False
        if cursor in self._seen:
            raise PaginationError(
                f"GET {self.path}: page {self.pages} repeated the cursor {cursor[:40]!r} "
                "of an earlier page; stopped instead of looping"
            )
        if self.pages >= self.max_pages:
            raise PaginationError(f"GET {self.path}: more than {self.max_pages} pages; stopped")
        self._seen.add(cursor)
        self.cursor = cursor
        return True


class TokenBucket:
    """``rate`` requests per second with bursts of ``burst`` (default ``2 * rate``, at least
    1); on Trio's clock. Raises :class:`ValueError` unless ``rate > 0``.

    ``take()`` hands tokens out in the order it was called: a caller that finds the bucket
    empty reserves the next token (the level goes below zero) and sleeps until it is due,
    so requests leave in the order they asked, each at a time fixed when it asked. (A
    bucket whose waiters all sleep and retry gives the token to whichever wakes first, and
    Trio wakes tasks with one deadline in no fixed order.) A caller cancelled while it
    waits gives its token back.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, 2 * rate)
        self._tokens = self.capacity  # below zero: tokens reserved by callers still waiting
        self._stamp: float | None = None

    async def take(self) -> None:
        """Wait for a token (seconds of virtual or real time, on Trio's clock)."""
        now = trio.current_time()
        if self._stamp is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1
        if self._tokens >= 0:
            return
        try:
            await trio.sleep(-self._tokens / self.rate)
        except trio.Cancelled:
            self._tokens += 1
            raise


class RestClient:
    """``get(path, params)`` -> the response body (bytes, undecoded); typed helpers for
    markets, orderbooks and trades decode it with :mod:`kalshi.wire.rest` and raise its
    :class:`DecodeError` (``GET <path>: <field>: ...``) on a body that does not fit.

    Retries 429, 5xx and transport failures with backoff up to ``attempts`` times, then
    raises :class:`RateLimited`, :class:`HttpError` or :class:`ConnectionLost`. A 4xx other
    than 429 raises :class:`HttpError` at once. ``on_request(endpoint, status)`` is called for
    every response (metrics), ``on_failure(endpoint, error)`` for every failed attempt, the
    ones retried too (``/health`` shows why the market listing fails from its first 429).
    """

    def __init__(
        self,
        base_url: str,
        signer: Signer | None = None,
        *,
        rate: float = 10.0,
        timeout: float = 10.0,
        attempts: int = 8,
        backoff: tuple[float, float] = (0.5, 30.0),
        wall_us: WallClock = system_wall_us,
        on_request: Callable[[str, int], None] | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._signer = signer
        self._bucket = TokenBucket(rate)
        self._attempts = attempts
        self._backoff = backoff
        self._wall_us = wall_us
        self._on_request = on_request
        self._on_failure = on_failure
        self.max_pages = max_pages
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self.requests = 0
        self.retries = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.aclose()

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """The body of a 200 answer to ``GET path`` (bytes as received; decode them with
        :mod:`kalshi.wire.rest`). 429, 5xx and transport failures are tried again
        (:func:`kalshi.retry.retry`), each attempt signed afresh under the token bucket."""
        url = self.base_url + path
        endpoint = _endpoint(path)

        async def once() -> bytes:
            await self._bucket.take()
            signed_at = self._wall_us()
            headers = self._signer.headers("GET", url, signed_at // 1000) if self._signer else {}
            self.requests += 1
            try:
                response = await self._client.get(url, params=params, headers=headers)
            except httpx.HTTPError as exc:
                self._count(endpoint, 0)
                raise ConnectionLost(f"GET {path}: {type(exc).__name__}: {exc}") from None
            status = response.status_code
            self._count(endpoint, status)
            if status == 200:
                return response.content
            if status == 429:
                raise RateLimited(f"GET {path}: 429 too many requests")
            hint = ""
            if status == 401:
                hint = clock_hint(response.headers.get("date", ""), response.text, signed_at)
            raise HttpError(status, f"GET {path}: {response.text[:200]}{hint}")

        def failed(error: BaseException, attempt: int) -> None:
            if self._on_failure is not None:
                self._on_failure(endpoint, error)
            if attempt < self._attempts:
                self.retries += 1
                log.info("%s; retry %d", error, attempt)

        initial, maximum = self._backoff
        return await retry(
            once,
            transient=_transient,
            attempts=self._attempts,
            initial=initial,
            maximum=maximum,
            on_failure=failed,
        )

    def _count(self, endpoint: str, status: int) -> None:
        if self._on_request is not None:
            self._on_request(endpoint, status)

    # --- typed helpers -----------------------------------------------------------------

    async def _page(
        self, path: str, params: Mapping[str, Any], decode: Callable[[bytes], T]
    ) -> tuple[bytes, T]:
        """The body of ``GET path`` as received and ``decode`` of it; its
        :class:`DecodeError` names the request."""
        body = await self.get(path, params)
        try:
            return body, decode(body)
        except DecodeError as exc:
            raise type(exc)(f"GET {path}: {exc}") from None

    async def _decoded(
        self, path: str, params: Mapping[str, Any], decode: Callable[[bytes], T]
    ) -> T:
        """``decode`` the body of ``GET path``; its :class:`DecodeError` names the request."""
        _, decoded = await self._page(path, params, decode)
        return decoded

    async def _pages(
        self,
        path: str,
        params: Mapping[str, Any],
        decode: Callable[[bytes], tuple[list[T], str | None]],
    ) -> AsyncIterator[tuple[dict[str, Any], bytes, list[T]]]:
        """Every page of ``GET path`` following its cursor: (the request's params, the body
        as received, its items); raises :class:`PaginationError` on a repeated cursor or
        past ``max_pages``."""
        pages = Pages(path, self.max_pages)
        while True:
            request = dict(params)
            if pages.cursor:
                request["cursor"] = pages.cursor
            body, (items, cursor) = await self._page(path, request, decode)
            yield request, body, items
            if not pages.advance(cursor):
                return

    async def market_pages(self, **filters: Any) -> AsyncIterator[list[Market]]:
        """Every page of ``/markets`` (1000 per page) for the given filters; raises
        :class:`PaginationError` on a repeated cursor or past ``max_pages``."""
        async for _, _, markets in self.market_bodies(**filters):
            yield markets

    async def market_bodies(
        self, **filters: Any
    ) -> AsyncIterator[tuple[dict[str, Any], bytes, list[Market]]]:
        """:meth:`market_pages` with each request's params and body as received, for a
        caller that journals the body (``docs/journal.md``)."""
        async for page in self._pages("/markets", {"limit": 1000, **filters}, decode_markets_page):
            yield page

    async def orderbook(self, ticker: str) -> BookSnapshot:
        path = f"/markets/{ticker}/orderbook"
        return await self._decoded(path, {"depth": 0}, lambda body: decode_orderbook(body, ticker))

    async def orderbooks(self, tickers: Sequence[str]) -> list[BookSnapshot]:
        """Whole books of up to 100 markets in one request (``GET /markets/orderbooks``,
        kalshi-api.md §4.5); markets the exchange does not return are left out."""
        _, _, books = await self.orderbooks_page(tickers)
        return books

    async def orderbooks_page(
        self, tickers: Sequence[str]
    ) -> tuple[dict[str, Any], bytes, list[BookSnapshot]]:
        """:meth:`orderbooks` with the request's params and the body as received, for a
        caller that journals the body (``docs/journal.md``)."""
        params: dict[str, Any] = {"tickers": list(tickers)}
        body, books = await self._page("/markets/orderbooks", params, decode_orderbooks)
        return params, body, books

    async def trades(
        self, *, min_ts: int | None = None, max_ts: int | None = None, ticker: str | None = None
    ) -> AsyncIterator[Trade]:
        """Trades in ``[min_ts, max_ts]`` (Unix seconds, inclusive), every page; raises
        :class:`PaginationError` on a repeated cursor or past ``max_pages``."""
        async for _, _, page in self.trade_pages(min_ts=min_ts, max_ts=max_ts, ticker=ticker):
            for trade in page:
                yield trade

    async def trade_pages(
        self, *, min_ts: int | None = None, max_ts: int | None = None, ticker: str | None = None
    ) -> AsyncIterator[tuple[dict[str, Any], bytes, list[Trade]]]:
        """:meth:`trades` a page at a time: (the request's params, the body as received,
        its trades), for a caller that journals the body (``docs/journal.md``)."""
        params: dict[str, Any] = {"limit": 1000}
        if min_ts is not None:
            params["min_ts"] = min_ts
        if max_ts is not None:
            params["max_ts"] = max_ts
        if ticker:
            params["ticker"] = ticker
        async for page in self._pages("/markets/trades", params, decode_trades_page):
            yield page


def _transient(error: BaseException) -> bool:
    """What a REST request tries again: the transport failed, 429 (kalshi-api.md §4.9: retry
    with exponential backoff) or 5xx; any other status is the request's fault and is raised
    at once."""
    if isinstance(error, HttpError):
        return error.status >= 500
    return isinstance(error, ConnectionLost | RateLimited)


def _endpoint(path: str) -> str:
    """A low-cardinality label for a path: tickers replaced by ``{ticker}``."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "markets" and parts[1] not in ("trades", "orderbooks"):
        parts[1] = "{ticker}"
    if len(parts) >= 2 and parts[0] in ("series", "events"):
        parts[1] = "{id}"
    return "/" + "/".join(parts)
