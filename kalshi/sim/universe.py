"""The simulated exchange's reference data: series -> events -> markets, generated lazily.

Market ``i`` (0-based) belongs to event ``i // MARKETS_PER_EVENT``; event ``e`` belongs to
series ``e % len(SERIES)`` and is that series' ``j = e // len(SERIES)``-th event. Everything
about a market (ticker, times, status, strike, price grid) is a pure function of ``i`` and
the exchange's start time, so 250 000 markets cost nothing until someone asks for them.
Markets touched at run time (traded, added, settled) carry a :class:`MarketState` that
overrides the generated values.

Event ordinal ``j`` maps to a close date: ``j < OPEN_WINDOW`` closes ``j`` days after start
(open now: status ``active``), the next ``past`` ordinals closed ``1..past`` days ago
(``closed``, ``determined``, then ``finalized``), the rest open in the future
(``initialized``). So the lowest indices are the open markets.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Final

from attrs import define, frozen

from kalshi.models.market import Event, Market, MarketStatus, PriceRange, Series
from kalshi.models.units import DOLLAR, format_price, format_rfc3339_us, format_size

__all__ = [
    "COMBO_PREFIX",
    "COMBO_SERIES",
    "MARKETS_PER_EVENT",
    "SERIES",
    "MarketInfo",
    "MarketState",
    "SeriesInfo",
    "Universe",
    "is_combo",
]

MARKETS_PER_EVENT: Final = 10
OPEN_WINDOW: Final = 30  # event ordinals whose markets are open at start
_DAY_US: Final = 86_400_000_000
_HOUR_US: Final = 3_600_000_000
_MONTHS: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)


@frozen
class SeriesInfo:
    ticker: str
    title: str
    category: str
    frequency: str
    strike_type: str  # "greater" (-T52) or "between" (-B52.5)
    base_strike: int  # in tenths
    strike_step: int  # in tenths
    price_level_structure: str
    ranges: tuple[PriceRange, ...]

    def strike_code(self, k: int) -> tuple[str, int]:
        tenths = self.base_strike + k * self.strike_step
        whole, frac = divmod(tenths, 10)
        text = f"{whole}.{frac}" if frac else str(whole)
        return ("T" if self.strike_type == "greater" else "B") + text, tenths


_CENT = DOLLAR // 100
_LINEAR_CENT = (PriceRange(0, DOLLAR, _CENT),)
_DECI_CENT = (PriceRange(0, DOLLAR, _CENT // 10),)
_CENTI_CENT = (PriceRange(0, DOLLAR, _CENT // 100),)
_TAPERED = (
    PriceRange(0, 10 * _CENT, _CENT // 10),
    PriceRange(10 * _CENT, 90 * _CENT, _CENT),
    PriceRange(90 * _CENT, DOLLAR, _CENT // 10),
)


def _series(
    ticker: str,
    title: str,
    category: str,
    strike_type: str,
    base: int,
    step: int,
    structure: str = "linear_cent",
    ranges: tuple[PriceRange, ...] = _LINEAR_CENT,
) -> SeriesInfo:
    return SeriesInfo(ticker, title, category, "daily", strike_type, base, step, structure, ranges)


SERIES: Final = (
    _series("KXHIGHNY", "Highest temperature in NYC", "Climate and Weather", "greater", 520, 10),
    _series(
        "KXHIGHCHI", "Highest temperature in Chicago", "Climate and Weather", "between", 485, 20
    ),
    _series("KXHIGHMIA", "Highest temperature in Miami", "Climate and Weather", "greater", 780, 10),
    _series(
        "KXHIGHAUS", "Highest temperature in Austin", "Climate and Weather", "between", 815, 20
    ),
    _series(
        "KXRAINNYC", "Rain in NYC", "Climate and Weather", "greater", 1, 1, "deci_cent", _DECI_CENT
    ),
    _series(
        "KXINXD",
        "S&P 500 daily close",
        "Financials",
        "between",
        58000,
        250,
        "tapered_deci_cent",
        _TAPERED,
    ),
    _series("KXNASDAQ100D", "Nasdaq-100 daily close", "Financials", "greater", 205000, 1000),
    _series(
        "KXBTCD",
        "Bitcoin price today",
        "Crypto",
        "greater",
        9_500_000,
        50_000,
        "center_centi_edge_centi_cent",
        _CENTI_CENT,
    ),
    _series(
        "KXETHD",
        "Ethereum price today",
        "Crypto",
        "greater",
        350_000,
        2500,
        "deci_cent",
        _DECI_CENT,
    ),
    _series("KXWTI", "WTI oil daily close", "Financials", "between", 700, 5),
    _series(
        "KXEURUSD",
        "EUR/USD daily close",
        "Financials",
        "greater",
        11,
        1,
        "tapered_deci_cent",
        _TAPERED,
    ),
    _series("KXGOLDD", "Gold daily close", "Financials", "greater", 27000, 50),
    _series("KXTSAW", "TSA checkpoint travel numbers", "Economics", "greater", 22000, 500),
    _series("KXGASD", "US gas price", "Economics", "between", 31, 1, "deci_cent", _DECI_CENT),
    _series("KXMLBGAME", "MLB game total runs", "Sports", "greater", 65, 10),
    _series("KXNBAPTS", "NBA game total points", "Sports", "greater", 2105, 50),
)

_SERIES_BY_TICKER: Final = {s.ticker: i for i, s in enumerate(SERIES)}

COMBO_PREFIX: Final = "KXMVE"
"""Multivariate (combo) markets' tickers start so (kalshi-api.md §3.5, §3.6, §5)."""
COMBO_SERIES: Final = _series(
    "KXMVECROSSCATEGORY",
    "Cross-category combo",
    "Sports",
    "greater",
    1,
    1,
    "center_centi_edge_centi_cent",
    _CENTI_CENT,
)
"""The series of combo markets the engine lists (``Engine.add_market(combo=True)``)."""


def is_combo(ticker: str) -> bool:
    return ticker.startswith(COMBO_PREFIX)


@frozen
class MarketInfo:
    """The generated, immutable part of a market."""

    index: int
    ticker: str
    event_ticker: str
    series: SeriesInfo
    strike_tenths: int
    created_us: int
    open_us: int
    close_us: int
    status: str  # status at start; MarketState overrides it later
    result: str
    market_id: str
    # A combo's legs: (event ticker, market ticker, side) of each market it combines
    # (``mve_selected_legs``, kalshi-api.md §4.3); empty for an ordinary market.
    legs: tuple[tuple[str, str, str], ...] = ()


@define
class MarketState:
    """What changed about a market since start. ``None`` keeps the generated value."""

    status: str | None = None
    close_us: int | None = None
    result: str | None = None
    settlement_value: int | None = None
    settled_us: int | None = None
    determined_us: int | None = None
    updated_us: int | None = None
    yes_bid: tuple[int, int] | None = None  # best (price, size)
    yes_ask: tuple[int, int] | None = None
    last_price: int | None = None
    volume: int = 0
    open_interest: int = 0


@functools.lru_cache(maxsize=4096)
def _date_code(day_us: int, hourly: bool = False) -> str:
    stamp = format_rfc3339_us(day_us, digits=0)  # 2026-11-25T00:00:00Z
    yy, mm, dd = stamp[2:4], int(stamp[5:7]), stamp[8:10]
    return f"{yy}{_MONTHS[mm - 1]}{dd}" + (stamp[11:13] if hourly else "")


def _uuid(seed: int, index: int) -> str:
    # Deterministic, valid-looking UUIDs (v4 layout) from the seed and an index.
    value = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) % (1 << 128)
    value = (value * 0x94D049BB133111EB + 0x2545F4914F6CDD1D) % (1 << 128)
    return str(uuid.UUID(int=value, version=4))


class Universe:
    """All markets of the exchange: ``size`` generated ones plus those added at run time."""

    def __init__(self, size: int, start_us: int, seed: int = 0) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self.start_us = start_us
        self.seed = seed
        self.day0_us = start_us - start_us % _DAY_US
        events = -(-size // MARKETS_PER_EVENT)
        per_series = -(-events // len(SERIES)) if events else 0
        self.past = max(0, (per_series - OPEN_WINDOW) // 4)
        self.states: dict[str, MarketState] = {}
        self.added: list[MarketInfo] = []
        self.added_events: dict[str, list[MarketInfo]] = {}
        self._by_ticker: dict[str, int] | None = None
        self._event_first: dict[str, int] | None = None

    # --- generation ---------------------------------------------------------------------

    def _close_day(self, j: int) -> int:
        if j < OPEN_WINDOW:
            offset = j
        elif j < OPEN_WINDOW + self.past:
            offset = OPEN_WINDOW - 1 - j  # -1, -2, ...
        else:
            offset = j - self.past
        return self.day0_us + offset * _DAY_US

    def info(self, i: int) -> MarketInfo:
        """The generated market number ``i`` (added markets follow the generated ones)."""
        if i >= self.size:
            return self.added[i - self.size]
        e, k = divmod(i, MARKETS_PER_EVENT)
        j, s = divmod(e, len(SERIES))
        series = SERIES[s]
        event_ticker, close_us, open_us = self._event_times(j, series.ticker)
        code, tenths = series.strike_code(k)
        status, result = self._status_at_start(j, close_us, open_us, i)
        return MarketInfo(
            index=i,
            ticker=f"{event_ticker}-{code}",
            event_ticker=event_ticker,
            series=series,
            strike_tenths=tenths,
            created_us=open_us - _DAY_US,
            open_us=open_us,
            close_us=close_us,
            status=status,
            result=result,
            # from what names the ticker (series, close day, strike), not the index: one
            # ticker keeps its id whatever the universe's date, two never share one
            market_id=_uuid(
                self.seed,
                ((self._close_day(j) // _DAY_US) * len(SERIES) + s) * MARKETS_PER_EVENT + k,
            ),
        )

    @functools.lru_cache(maxsize=1024)  # noqa: B019  # one Universe per exchange
    def _event_times(self, j: int, series: str) -> tuple[str, int, int]:
        day = self._close_day(j)
        close_us = day + _DAY_US + 4 * _HOUR_US - 60_000_000  # 23:59 ET (EDT)
        if j < OPEN_WINDOW:
            open_us = self.day0_us - _DAY_US + 14 * _HOUR_US
        else:
            open_us = close_us - 2 * _DAY_US
        return f"{series}-{_date_code(day)}", close_us, open_us

    def _status_at_start(self, j: int, close_us: int, open_us: int, i: int) -> tuple[str, str]:
        if j < OPEN_WINDOW:
            return MarketStatus.ACTIVE, ""
        if open_us > self.start_us:
            return MarketStatus.INITIALIZED, ""
        days_ago = (self.start_us - close_us) // _DAY_US
        result = "yes" if (i * 2654435761) % 7 < 3 else "no"
        if days_ago < 1:
            return MarketStatus.CLOSED, ""
        if days_ago < 2:
            return MarketStatus.DETERMINED, result
        return MarketStatus.FINALIZED, result

    def __len__(self) -> int:
        return self.size + len(self.added)

    def __iter__(self) -> Iterator[MarketInfo]:
        return (self.info(i) for i in range(len(self)))

    def ticker(self, i: int) -> str:
        """The ticker of market number ``i`` (what :meth:`info` would say, without building
        the rest of it)."""
        if i >= self.size:
            return self.added[i - self.size].ticker
        e, k = divmod(i, MARKETS_PER_EVENT)
        j, s = divmod(e, len(SERIES))
        series = SERIES[s]
        return f"{self._event_times(j, series.ticker)[0]}-{series.strike_code(k)[0]}"

    def build_index(self) -> None:
        """Index every ticker now (about 0.5 s at 250 000 markets), so that no later lookup
        stalls the exchange's event loop to build it."""
        if self._by_ticker is None:
            ticker = self.ticker
            self._by_ticker = {ticker(i): i for i in range(len(self))}

    def index_of(self, ticker: str) -> int | None:
        if self._by_ticker is None:
            self.build_index()
            assert self._by_ticker is not None
        return self._by_ticker.get(ticker)

    def get(self, ticker: str) -> MarketInfo | None:
        i = self.index_of(ticker)
        return None if i is None else self.info(i)

    def add(self, info: MarketInfo) -> None:
        if self._by_ticker is not None:
            self._by_ticker[info.ticker] = len(self)
        self.added.append(info)
        self.added_events.setdefault(info.event_ticker, []).append(info)

    def new_info(
        self,
        series: SeriesInfo,
        event_ticker: str,
        code: str,
        open_us: int,
        close_us: int,
        legs: tuple[tuple[str, str, str], ...] = (),
        salt: int = 0,
    ) -> MarketInfo:
        """A market to :meth:`add` (index = the next free one), status ``initialized``;
        ``legs`` for a combo; ``salt`` (the engine's run salt) makes its ``market_id``
        unique to this run."""
        i = len(self)
        return MarketInfo(
            index=i,
            ticker=f"{event_ticker}-{code}",
            event_ticker=event_ticker,
            series=series,
            strike_tenths=series.base_strike,
            created_us=open_us,
            open_us=open_us,
            close_us=close_us,
            status=MarketStatus.INITIALIZED,
            result="",
            market_id=_uuid(self.seed ^ salt, i),
            legs=legs,
        )

    def _generated_events(self) -> dict[str, int]:
        if self._event_first is None:
            self._event_first = {
                self.info(i).event_ticker: i for i in range(0, self.size, MARKETS_PER_EVENT)
            }
        return self._event_first

    def event_markets(self, event_ticker: str) -> list[MarketInfo]:
        """Every market of an event, generated ones first."""
        start = self._generated_events().get(event_ticker)
        out = []
        if start is not None:
            stop = min(start + MARKETS_PER_EVENT, self.size)
            out = [self.info(i) for i in range(start, stop)]
        out.extend(self.added_events.get(event_ticker, ()))
        return out

    def events(self) -> Iterator[MarketInfo]:
        """The first market of every event, generated events first, then added ones."""
        for i in range(0, self.size, MARKETS_PER_EVENT):
            yield self.info(i)
        generated = self._generated_events() if self.added_events else {}
        for event_ticker, markets in self.added_events.items():
            if event_ticker not in generated:
                yield markets[0]

    # --- current values -------------------------------------------------------------------

    def status(self, info: MarketInfo) -> str:
        state = self.states.get(info.ticker)
        return state.status if state is not None and state.status else info.status

    def close_us(self, info: MarketInfo) -> int:
        state = self.states.get(info.ticker)
        return state.close_us if state is not None and state.close_us else info.close_us

    def settled_us(self, info: MarketInfo) -> int | None:
        state = self.states.get(info.ticker)
        if state is not None and state.settled_us is not None:
            return state.settled_us
        if info.status == MarketStatus.FINALIZED:
            return info.close_us + 3 * _HOUR_US
        return None

    def market(self, info: MarketInfo) -> Market:
        """The market as the decoders would read it back from REST."""
        state = self.states.get(info.ticker) or MarketState()
        status = self.status(info)
        result = state.result if state.result is not None else info.result
        return Market(
            ticker=info.ticker,
            event_ticker=info.event_ticker,
            status=status,
            title=self._title(info),
            yes_sub_title=self._sub_title(info),
            no_sub_title=self._sub_title(info),
            created_time=info.created_us,
            updated_time=state.updated_us or info.created_us,
            open_time=info.open_us,
            close_time=self.close_us(info),
            latest_expiration_time=info.close_us + 7 * _DAY_US,
            yes_bid=state.yes_bid[0] if state.yes_bid else 0,
            yes_ask=state.yes_ask[0] if state.yes_ask else DOLLAR,
            no_bid=DOLLAR - state.yes_ask[0] if state.yes_ask else 0,
            no_ask=DOLLAR - state.yes_bid[0] if state.yes_bid else DOLLAR,
            last_price=state.last_price or 0,
            volume=state.volume,
            volume_24h=state.volume,
            open_interest=state.open_interest,
            result=result,
            price_level_structure=info.series.price_level_structure,
            price_ranges=info.series.ranges,
            exchange_index=0,
            settlement_value=self._settlement_value(info, state),
        )

    def _settlement_value(self, info: MarketInfo, state: MarketState) -> int | None:
        if state.settlement_value is not None:
            return state.settlement_value
        if info.result:
            return DOLLAR if info.result == "yes" else 0
        return None

    def _title(self, info: MarketInfo) -> str:
        return f"{info.series.title} on {_date_code(info.close_us - _DAY_US)}"

    def _sub_title(self, info: MarketInfo) -> str:
        whole, frac = divmod(info.strike_tenths, 10)
        strike = f"{whole}.{frac}" if frac else str(whole)
        return (
            f"{strike} or above"
            if info.series.strike_type == "greater"
            else f"{strike} to {whole + 1}.{frac}"
        )

    def market_json(self, info: MarketInfo) -> dict[str, Any]:
        """The REST Market object, every field named as in the reference (§4.4)."""
        m = self.market(info)
        state = self.states.get(info.ticker) or MarketState()
        bid_size = state.yes_bid[1] if state.yes_bid else 0
        ask_size = state.yes_ask[1] if state.yes_ask else 0
        body: dict[str, Any] = {
            "ticker": m.ticker,
            "event_ticker": m.event_ticker,
            "market_type": "binary",
            "title": m.title,
            "subtitle": "",
            "yes_sub_title": m.yes_sub_title,
            "no_sub_title": m.no_sub_title,
            "created_time": _time(m.created_time),
            "updated_time": _time(m.updated_time),
            "open_time": _time(m.open_time),
            "close_time": _time(m.close_time),
            "expected_expiration_time": _time(info.close_us + _HOUR_US),
            "latest_expiration_time": _time(m.latest_expiration_time),
            "settlement_timer_seconds": 1800,
            "status": m.status,
            "yes_bid_dollars": _price(m.yes_bid or 0),
            "yes_bid_size_fp": _size(bid_size),
            "yes_ask_dollars": _price(DOLLAR if m.yes_ask is None else m.yes_ask),
            "yes_ask_size_fp": _size(ask_size),
            "no_bid_dollars": _price(m.no_bid or 0),
            "no_ask_dollars": _price(DOLLAR if m.no_ask is None else m.no_ask),
            "last_price_dollars": _price(m.last_price or 0),
            "volume_fp": _size(m.volume or 0),
            "volume_24h_fp": _size(m.volume_24h or 0),
            "result": m.result,
            "can_close_early": True,
            "open_interest_fp": _size(m.open_interest or 0),
            "notional_value_dollars": "1.0000",
            "previous_yes_bid_dollars": "0.0000",
            "previous_yes_ask_dollars": "1.0000",
            "previous_price_dollars": "0.0000",
            "settlement_bounds_type": "default",
            "expiration_value": "",
            "rules_primary": f"If {m.yes_sub_title}, then the market resolves to Yes.",
            "rules_secondary": "",
            "strike_type": info.series.strike_type,
            "price_level_structure": m.price_level_structure,
            "price_ranges": _ranges_json(m.price_ranges),
            "exchange_index": 0,
        }
        whole, frac = divmod(info.strike_tenths, 10)
        body["floor_strike"] = whole + frac / 10 if frac else whole
        if info.series.strike_type == "between":
            body["cap_strike"] = whole + 1 + frac / 10 if frac else whole + 1
        if is_combo(info.ticker):
            body["mve_collection_ticker"] = info.series.ticker
            body["mve_selected_legs"] = [
                {"event_ticker": event, "market_ticker": ticker, "side": side}
                for event, ticker, side in info.legs
            ]
        if m.settlement_value is not None:
            body["settlement_value_dollars"] = _price(m.settlement_value)
        settled = self.settled_us(info)
        if settled is not None and m.status == MarketStatus.FINALIZED:
            body["settlement_ts"] = _time(settled)
        return body

    # --- series and events ------------------------------------------------------------------

    def series_json(self, series: SeriesInfo) -> dict[str, Any]:
        return {
            "ticker": series.ticker,
            "frequency": series.frequency,
            "title": series.title,
            "category": series.category,
            "categories": [series.category],
            "tags": [],
            "settlement_sources": [{"name": "Sim", "url": "http://127.0.0.1/"}],
            "contract_url": "",
            "contract_terms_url": "",
            "fee_type": "quadratic",
            "fee_multiplier": 1,
            "additional_prohibitions": [],
            "last_updated_ts": _time(self.start_us),
            "exchange_index": 0,
        }

    def event_json(self, first: MarketInfo) -> dict[str, Any]:
        return {
            "event_ticker": first.event_ticker,
            "series_ticker": first.series.ticker,
            "sub_title": f"On {_date_code(first.close_us - _DAY_US)}",
            "title": f"{first.series.title}?",
            "collateral_return_type": "MECNET",
            "mutually_exclusive": first.series.strike_type == "between",
            "category": first.series.category,
            "strike_date": _time(first.close_us),
            "settlement_sources": [{"name": "Sim", "url": "http://127.0.0.1/"}],
            "last_updated_ts": _time(first.created_us),
            "exchange_index": 0,
        }

    def event(self, first: MarketInfo) -> Event:
        data = self.event_json(first)
        return Event(
            event_ticker=data["event_ticker"],
            series_ticker=data["series_ticker"],
            title=data["title"],
            sub_title=data["sub_title"],
            mutually_exclusive=data["mutually_exclusive"],
        )

    @staticmethod
    def series_named(ticker: str) -> SeriesInfo | None:
        if ticker == COMBO_SERIES.ticker:
            return COMBO_SERIES
        i = _SERIES_BY_TICKER.get(ticker)
        return None if i is None else SERIES[i]

    @staticmethod
    def series_model(series: SeriesInfo) -> Series:
        return Series(series.ticker, series.title, series.category, series.frequency)


@functools.lru_cache(maxsize=8192)
def _time(us: int | None) -> str:
    return "" if us is None else format_rfc3339_us(us, digits=0)


_price = functools.lru_cache(maxsize=16384)(format_price)
_size = functools.lru_cache(maxsize=16384)(format_size)


@functools.cache
def _ranges_json(ranges: tuple[PriceRange, ...]) -> list[dict[str, str]]:
    return [
        {"start": format_price(r.start), "end": format_price(r.end), "step": format_price(r.step)}
        for r in ranges
    ]


class MarketsView(Mapping[str, Market]):
    """``truth.markets``: ticker -> current Market, generated on access."""

    def __init__(self, universe: Universe) -> None:
        self._u = universe

    def __getitem__(self, ticker: str) -> Market:
        info = self._u.get(ticker)
        if info is None:
            raise KeyError(ticker)
        return self._u.market(info)

    def __iter__(self) -> Iterator[str]:
        return (self._u.info(i).ticker for i in range(len(self._u)))

    def __len__(self) -> int:
        return len(self._u)
