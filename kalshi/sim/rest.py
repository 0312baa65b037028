"""The REST side: market-data GETs under ``/trade-api/v2``, shaped as in the reference §4.

Pagination cursors are opaque base64 strings holding a position; the last page answers
``"cursor": ""``. Errors use the wrapped shape seen on the wire
(``{"error":{"code":...,"message":...}}``); a 429 answers ``{"error":"too many requests"}``
with no ``Retry-After`` and no rate headers.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson
import trio

from kalshi.http.server import Request, Response
from kalshi.models.market import MarketStatus
from kalshi.models.paths import REST_ROOT
from kalshi.models.trade import Trade
from kalshi.models.units import format_price, format_rfc3339_us, format_size
from kalshi.sim.universe import MARKETS_PER_EVENT, SERIES, MarketInfo, Universe, is_combo

if TYPE_CHECKING:
    from kalshi.sim.server import SimExchange

__all__ = ["API_ROOT", "TIERS", "RestApi"]

API_ROOT: Final = REST_ROOT
# Read budgets of the token-bucket model (RL): (refill tokens/s, capacity); 10 tokens a GET.
TIERS: Final = {
    "basic": (200.0, 400.0),
    "advanced": (300.0, 600.0),
    "expert": (600.0, 600.0),
    "premier": (1000.0, 1000.0),
    "paragon": (2000.0, 2000.0),
    "prime": (4000.0, 4000.0),
    "prestige": (10000.0, 10000.0),
}
REQUEST_COST: Final = 10.0
MAX_ORDERBOOKS: Final = 100  # tickers per GET /markets/orderbooks (kalshi-api.md §4.5)
_STATUS_FILTER: Final = {
    "unopened": frozenset({MarketStatus.INITIALIZED}),
    "open": frozenset({MarketStatus.ACTIVE, MarketStatus.INACTIVE}),
    "paused": frozenset({MarketStatus.INACTIVE}),
    "closed": frozenset(
        {MarketStatus.CLOSED, MarketStatus.DETERMINED, MarketStatus.DISPUTED, MarketStatus.AMENDED}
    ),
    "settled": frozenset({MarketStatus.FINALIZED}),
}
# Timestamp filter families and the status values each may be combined with.
_FAMILIES: Final = {
    "created": frozenset({"", "unopened", "open"}),
    "close": frozenset({"", "closed"}),
    "settled": frozenset({"", "settled"}),
    "updated": frozenset({"", "unopened", "open", "paused", "closed", "settled"}),
}


class _BadRequest(Exception):
    pass


def _json(status: int, doc: object) -> Response:
    return Response(status, orjson.dumps(doc))


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message, "service": "sim"}})


TOO_MANY: Final = Response(429, b'{"error":"too many requests"}')
NOT_FOUND: Final = _error(404, "not_found", "not found")


def _cursor(kind: str, position: int) -> str:
    return base64.urlsafe_b64encode(b"%s:%d" % (kind.encode(), position)).decode().rstrip("=")


def _position(kind: str, cursor: str) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != kind or not number.isdigit():
            raise ValueError
        return int(number)
    except ValueError:
        raise _BadRequest("invalid cursor") from None


class _Query:
    def __init__(self, query: dict[str, list[str]]) -> None:
        self._q = query

    def text(self, name: str) -> str:
        values = self._q.get(name)
        return values[-1] if values else ""

    def texts(self, name: str) -> list[str]:
        """Every value of a repeated parameter (``tickers=A&tickers=B``), commas split too."""
        return [part for value in self._q.get(name, []) for part in value.split(",") if part]

    def number(
        self, name: str, default: int | None = None, lo: int = 0, hi: int = 2**62
    ) -> int | None:
        text = self.text(name)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            raise _BadRequest(f"{name} must be an integer") from None
        if not lo <= value <= hi:
            raise _BadRequest(f"{name} must be between {lo} and {hi}")
        return value

    def flag(self, name: str) -> bool:
        text = self.text(name)
        if text not in ("", "true", "false"):
            raise _BadRequest(f"{name} must be true or false")
        return text == "true"


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, capacity: float) -> None:
        self.tokens, self.stamp = capacity, trio.current_time()


class RestApi:
    """Answers one parsed request (``handle``); the server owns sockets and auth checks."""

    def __init__(self, sim: SimExchange, tier: str | None) -> None:
        self.sim = sim
        self.universe: Universe = sim.universe
        self._budget = TIERS[tier] if tier else None
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, who: str) -> bool:
        """Take one request's tokens from ``who``'s read bucket (key id or client address)."""
        if self._budget is None:
            return True
        rate, capacity = self._budget
        bucket = self._buckets.get(who)
        if bucket is None:
            bucket = self._buckets[who] = _Bucket(capacity)
        now = trio.current_time()
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < REQUEST_COST:
            return False
        bucket.tokens -= REQUEST_COST
        return True

    def handle(self, request: Request) -> Response:
        path = request.path
        if not path.startswith(API_ROOT + "/"):
            return NOT_FOUND
        if request.method not in ("GET", "HEAD"):
            return _error(405, "method_not_allowed", "method not allowed")
        parts = path[len(API_ROOT) + 1 :].split("/")
        query = _Query(dict(request.query))
        try:
            return self._route(parts, query)
        except _BadRequest as exc:
            return _error(400, "bad_request", str(exc))

    def _route(self, parts: list[str], q: _Query) -> Response:
        self.sim.engine.open_due()  # statuses as of now, the engine paused or not
        match parts:
            case ["exchange", "status"]:
                return _json(200, self.exchange_status())
            case ["markets"]:
                return self._markets(q)
            case ["markets", "trades"]:
                return self._trades(q)
            case ["markets", "orderbooks"]:
                return self._orderbooks(q)
            case ["markets", ticker]:
                info = self.universe.get(ticker)
                if info is None:
                    return _error(404, "market_not_found", "market not found")
                return _json(200, {"market": self.universe.market_json(info)})
            case ["markets", ticker, "orderbook"]:
                return self._orderbook(ticker, q)
            case ["events"]:
                return self._events(q)
            case ["events", "multivariate"]:
                return self._multivariate_events(q)
            case ["events", event_ticker]:
                return self._event(event_ticker, q)
            case ["series"]:
                category = q.text("category")
                found = [s for s in SERIES if not category or s.category == category]
                return _json(200, {"series": [self.universe.series_json(s) for s in found]})
            case ["series", ticker]:
                series = self.universe.series_named(ticker)
                if series is None:
                    return NOT_FOUND
                return _json(200, {"series": self.universe.series_json(series)})
        return NOT_FOUND

    @staticmethod
    def exchange_status() -> dict[str, Any]:
        return {
            "exchange_active": True,
            "trading_active": True,
            "intra_exchange_transfers_active": True,
            "exchange_estimated_resume_time": None,
            "exchange_index_statuses": [
                {
                    "exchange_index": 0,
                    "description": "Kalshi simulated exchange",
                    "exchange_active": True,
                    "trading_active": True,
                    "intra_exchange_transfers_active": True,
                }
            ],
        }

    # --- markets ----------------------------------------------------------------------------

    def _markets(self, q: _Query) -> Response:
        limit = q.number("limit", 100, 0, 1000) or 100
        start = _position("m", q.text("cursor"))
        status = q.text("status")
        if status and status not in _STATUS_FILTER:
            raise _BadRequest(f"status must be one of {', '.join(_STATUS_FILTER)}")
        mve = q.text("mve_filter")
        if mve not in ("", "only", "exclude"):
            raise _BadRequest("mve_filter must be only or exclude")
        checks = self._time_filters(q, status, mve)
        u = self.universe
        if status:
            wanted = _STATUS_FILTER[status]
            checks.append(lambda info: u.status(info) in wanted)
        event_ticker, series_ticker = q.text("event_ticker"), q.text("series_ticker")
        if series_ticker:
            checks.append(lambda info: info.series.ticker == series_ticker)
        tickers = [t for t in q.text("tickers").split(",") if t]
        if mve == "only":  # combos are only ever added (Engine.add_market(combo=True))
            candidates: Iterator[int] = (m.index for m in u.added if is_combo(m.ticker))
        elif event_ticker:
            candidates = (m.index for m in u.event_markets(event_ticker))
        elif tickers:
            found = (u.index_of(t) for t in tickers)
            candidates = iter(sorted({i for i in found if i is not None}))
        elif series_ticker and self.universe.series_named(series_ticker) is not None:
            candidates = self._series_indices(series_ticker)
        else:
            candidates = iter(range(start, len(u)))
        if mve == "exclude":
            checks.append(lambda info: not is_combo(info.ticker))
        page, more = _page(candidates, start, limit, checks, u)
        body = {
            "markets": [u.market_json(info) for info in page],
            "cursor": self._next_cursor(q, _cursor("m", page[-1].index + 1) if more else ""),
        }
        return _json(200, body)

    def _next_cursor(self, q: _Query, cursor: str) -> str:
        """``cursor``, or under the ``stuck_cursor`` fault the one the request carried."""
        faults = self.sim.faults
        if cursor and trio.current_time() < faults.stuck_cursor_until:
            faults.count("stuck_cursor")
            return q.text("cursor") or cursor
        return cursor

    def _series_indices(self, series_ticker: str) -> Iterator[int]:
        s = next(i for i, x in enumerate(SERIES) if x.ticker == series_ticker)
        u = self.universe
        for e in range(s, -(-u.size // MARKETS_PER_EVENT), len(SERIES)):
            yield from range(e * MARKETS_PER_EVENT, min(u.size, (e + 1) * MARKETS_PER_EVENT))
        yield from (m.index for m in u.added if m.series.ticker == series_ticker)

    def _time_filters(self, q: _Query, status: str, mve: str) -> list[Callable[[MarketInfo], bool]]:
        u = self.universe
        used: list[str] = []
        checks: list[Callable[[MarketInfo], bool]] = []
        getters: dict[str, Callable[[MarketInfo], int | None]] = {
            "created": lambda info: info.created_us,
            "close": u.close_us,
            "settled": u.settled_us,
            "updated": lambda info: (
                (u.states.get(info.ticker) and u.states[info.ticker].updated_us) or info.created_us
            ),
        }
        for family, getter in getters.items():
            lo = q.number(f"min_{family}_ts")
            hi = q.number(f"max_{family}_ts")
            if lo is None and hi is None:
                continue
            used.append(family)
            if status not in _FAMILIES[family]:
                raise _BadRequest(f"{family} timestamp filters cannot be used with status={status}")
            if family == "updated" and mve != "exclude":
                raise _BadRequest("updated timestamp filters need mve_filter=exclude")
            checks.append(_between(getter, lo, hi))
        if len(used) > 1:
            raise _BadRequest("timestamp filters " + " and ".join(used) + " cannot be combined")
        return checks

    # --- orderbook --------------------------------------------------------------------------

    def _orderbook(self, ticker: str, q: _Query) -> Response:
        depth = q.number("depth", 0, 0, 100) or 0
        if self.universe.get(ticker) is None:
            return _error(404, "market_not_found", "market not found")
        return _json(200, {"orderbook_fp": self._book_fp(ticker, depth)})

    def _orderbooks(self, q: _Query) -> Response:
        """``GET /markets/orderbooks?tickers=A&tickers=B``: 1-100 tickers, one request
        (kalshi-api.md §4.5); markets the exchange does not know are left out."""
        tickers = list(dict.fromkeys(q.texts("tickers")))
        if not 1 <= len(tickers) <= MAX_ORDERBOOKS:
            raise _BadRequest(f"tickers: between 1 and {MAX_ORDERBOOKS} are required")
        books = [
            {"ticker": ticker, "orderbook_fp": self._book_fp(ticker, 0)}
            for ticker in tickers
            if self.universe.get(ticker) is not None
        ]
        return _json(200, {"orderbooks": books})

    def _book_fp(self, ticker: str, depth: int) -> dict[str, Any]:
        book = self.sim.truth.books.get(ticker)
        yes = sorted(book.yes.items()) if book else []
        no = sorted(book.no.items()) if book else []
        if depth:
            yes, no = yes[-depth:], no[-depth:]
        return {
            "yes_dollars": [[format_price(p), format_size(s)] for p, s in yes],
            "no_dollars": [[format_price(p), format_size(s)] for p, s in no],
        }

    # --- trades -----------------------------------------------------------------------------

    def _trades(self, q: _Query) -> Response:
        limit = q.number("limit", 100, 0, 1000) or 100
        trades = self.sim.truth.trades
        offset = self.sim.truth.trades_offset  # cursors are absolute trade positions
        end = offset + len(trades)
        if q.text("cursor"):
            end = min(end, _position("t", q.text("cursor")))
        ticker = q.text("ticker")
        min_us = (q.number("min_ts") or 0) * 1_000_000
        max_ts = q.number("max_ts")
        max_us = None if max_ts is None else max_ts * 1_000_000 + 999_999
        block = q.text("is_block_trade")
        if block not in ("", "true", "false"):
            raise _BadRequest("is_block_trade must be true or false")
        out: list[dict[str, Any]] = []
        i = end - 1
        next_cursor = ""
        while i >= offset:  # newest first (older ones are forgotten: trade_window_s)
            t = trades[i - offset]
            if t.exchange_ts < min_us:
                break  # trades are in time order: nothing older can match
            keep = (not ticker or t.ticker == ticker) and (
                max_us is None or t.exchange_ts <= max_us
            )
            if keep and block:
                keep = t.is_block_trade == (block == "true")
            if keep:
                if len(out) == limit:
                    next_cursor = _cursor("t", i + 1)
                    break
                out.append(
                    {
                        "trade_id": t.trade_id,
                        "ticker": t.ticker,
                        "count_fp": format_size(t.count),
                        "yes_price_dollars": format_price(t.yes_price),
                        "no_price_dollars": format_price(t.no_price),
                        "taker_side": t.taker_side.value,
                        "taker_outcome_side": t.taker_side.value,
                        "taker_book_side": "bid" if t.taker_side.value == "yes" else "ask",
                        "created_time": format_rfc3339_us(
                            _created_us(t, _run_position(trades, i - offset)), digits=6, trim=True
                        ),
                        "is_block_trade": t.is_block_trade,
                    }
                )
            i -= 1
        return _json(200, {"trades": out, "cursor": self._next_cursor(q, next_cursor)})

    # --- events -----------------------------------------------------------------------------

    def _events(self, q: _Query) -> Response:
        limit = q.number("limit", 200, 1, 200) or 200
        start = _position("e", q.text("cursor"))
        nested = q.flag("with_nested_markets")
        status = q.text("status")
        if status and status not in ("unopened", "open", "closed", "settled"):
            raise _BadRequest("status must be one of unopened, open, closed, settled")
        series_ticker = q.text("series_ticker")
        wanted = {t for t in q.text("tickers").split(",") if t}
        min_close = q.number("min_close_ts")
        u = self.universe
        out: list[dict[str, Any]] = []
        position = start
        more = False
        for position, first in self._events_from(start):  # noqa: B007  # read after the loop
            if is_combo(first.ticker):  # multivariate events: GET /events/multivariate
                continue
            if series_ticker and first.series.ticker != series_ticker:
                continue
            if wanted and first.event_ticker not in wanted:
                continue
            markets = u.event_markets(first.event_ticker) if status or nested or min_close else []
            if status and not any(u.status(m) in _STATUS_FILTER[status] for m in markets):
                continue
            if min_close is not None and not any(
                u.close_us(m) >= min_close * 1_000_000 for m in markets
            ):
                continue
            if len(out) == limit:
                more = True
                break
            event = u.event_json(first)
            if nested:
                event["markets"] = [u.market_json(m) for m in markets]
            out.append(event)
        cursor = _cursor("e", position) if more else ""
        return _json(200, {"events": out, "cursor": self._next_cursor(q, cursor)})

    def _multivariate_events(self, q: _Query) -> Response:
        """``GET /events/multivariate`` (kalshi-api.md §4.2): the combos' events, filtered
        by ``series_ticker`` xor ``collection_ticker`` (the same here: one collection per
        combo series), ``limit`` 1-200 (default 100), ``with_nested_markets``."""
        limit = q.number("limit", 100, 1, 200) or 100
        start = _position("v", q.text("cursor"))
        series_ticker, collection = q.text("series_ticker"), q.text("collection_ticker")
        if series_ticker and collection:
            raise _BadRequest("series_ticker and collection_ticker are exclusive")
        wanted = series_ticker or collection
        u = self.universe
        firsts = [ms[0] for ms in u.added_events.values() if is_combo(ms[0].ticker)]
        firsts = [f for f in firsts if not wanted or f.series.ticker == wanted]
        page = firsts[start : start + limit]
        out = []
        for first in page:
            event = u.event_json(first)
            if q.flag("with_nested_markets"):
                event["markets"] = [u.market_json(m) for m in u.event_markets(first.event_ticker)]
            out.append(event)
        more = start + limit < len(firsts)
        cursor = _cursor("v", start + limit) if more else ""
        return _json(200, {"events": out, "cursor": self._next_cursor(q, cursor)})

    def _events_from(self, position: int) -> Iterator[tuple[int, MarketInfo]]:
        u = self.universe
        generated = -(-u.size // MARKETS_PER_EVENT)
        for p in range(position, generated):
            yield p, u.info(p * MARKETS_PER_EVENT)
        added = [
            ms[0] for e, ms in u.added_events.items() if not u.event_markets(e)[0].index < u.size
        ]
        for k in range(max(0, position - generated), len(added)):
            yield generated + k, added[k]

    def _event(self, event_ticker: str, q: _Query) -> Response:
        markets = self.universe.event_markets(event_ticker)
        if not markets:
            return _error(404, "event_not_found", "event not found")
        event = self.universe.event_json(markets[0])
        listed = [self.universe.market_json(m) for m in markets]
        if q.flag("with_nested_markets"):
            event["markets"] = listed
            return _json(200, {"event": event, "markets": []})
        return _json(200, {"event": event, "markets": listed})


def _between(
    getter: Callable[[MarketInfo], int | None], lo: int | None, hi: int | None
) -> Callable[[MarketInfo], bool]:
    lo_us = None if lo is None else lo * 1_000_000
    hi_us = None if hi is None else hi * 1_000_000 + 999_999

    def check(info: MarketInfo) -> bool:
        value = getter(info)
        if value is None:
            return False
        return (lo_us is None or value >= lo_us) and (hi_us is None or value <= hi_us)

    return check


def _page(
    candidates: Iterator[int],
    start: int,
    limit: int,
    checks: list[Callable[[MarketInfo], bool]],
    universe: Universe,
) -> tuple[list[MarketInfo], bool]:
    """Up to ``limit`` matching markets at index >= ``start``, and whether more match."""
    page: list[MarketInfo] = []
    for i in candidates:
        if i < start:
            continue
        info = universe.info(i)
        if all(check(info) for check in checks):
            if len(page) == limit:
                return page, True
            page.append(info)
    return page, False


def _created_us(trade: Trade, run: int = 0) -> int:
    """The REST ``created_time`` of a trade: microseconds whose millisecond is the WS
    ``ts_ms`` (the real exchange's ``"…T11:29:25.354888Z"`` beside ``ts_ms`` …354, issue 17).
    The extra µs grow with ``run`` (the trade's place among those of its millisecond) and
    are derived from the trade id within it, so they are stable across requests and a newer
    trade never has an earlier time (newest first holds to the µs, issue 15)."""
    step = 100
    return trade.exchange_ts + min(999, run * step + int(trade.trade_id[-3:], 16) % step)


def _run_position(trades: Sequence[Trade], i: int) -> int:
    """How many trades right before ``trades[i]`` share its millisecond."""
    ts = trades[i].exchange_ts
    n = 0
    while i - n - 1 >= 0 and trades[i - n - 1].exchange_ts == ts:
        n += 1
    return n
