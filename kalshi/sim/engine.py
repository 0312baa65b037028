"""The matching engine: seeded, deterministic order-book changes, trades and lifecycle.

One :class:`OrderBook` per active market. Each *action* picks a market and adds liquidity,
cancels some, or trades against the top of the book (the trade removes exactly the size it
fills from the level it hits, so trades and books agree). An action emits one or more
messages: ``orderbook_delta``, ``trade``, ``ticker`` (when the top of book or totals
change), and lifecycle messages for markets added or settled. In real time the engine runs
in 10 ms ticks at ``rate`` messages/s on average, with bursts (some ticks carry five
times the average) and clusters of changes to the same level in the same millisecond.

Given the same seed, the same run id and the same sequence of calls, the messages are
identical except for their timestamps, which come from the injected wall clock. The run id
(default: the wall clock when the exchange starts) salts every id the exchange issues once
for good (trade ids, the tickers and ids of markets added at run time), so a restarted
simulator never reissues one, as the real exchange never does (issue F4).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from functools import cache, lru_cache
from math import log as _log
from typing import Any

import orjson
import trio

from kalshi.book import OrderBook
from kalshi.errors import BookError
from kalshi.models.book import BookDelta, Side
from kalshi.models.lifecycle import EventLifecycle, LifecycleEvent
from kalshi.models.market import MarketStatus, PriceRange
from kalshi.models.ticker import Ticker
from kalshi.models.trade import Trade
from kalshi.models.units import (
    DOLLAR,
    PRICE_SCALE,
    SIZE_SCALE,
    format_price,
    format_rfc3339_us,
    format_size,
)
from kalshi.sim.truth import SimEvent, Truth
from kalshi.sim.universe import COMBO_SERIES, SERIES, MarketInfo, MarketState, Universe, is_combo

__all__ = ["Engine"]

TICK = 0.01  # seconds per real-time batch
# The run loop wakes every BATCH seconds and generates the ticks due since, each with its
# own draws and its own times (as if it had woken every TICK): one wake-up, and one write
# per client connection, for five ticks instead of one; a message leaves at most
# BATCH - TICK later than its exchange time (issue 20: the simulator's CPU a message).
BATCH = 0.05
_WAIT = BATCH - TICK / 2  # from a batch's first tick to its wake-up (its last tick is due)
_BURST_P = 0.05
_BURST_X = 5.0
_CALM_X = (1 - _BURST_P * _BURST_X) / (1 - _BURST_P)  # keeps the mean at `rate`
_YES = Side.YES  # a module constant: an Enum member read through its class costs ~40 ns
_NO = Side.NO
_LIFECYCLE_CHANNEL = "market_lifecycle_v2"
_COMBO_CHANNEL = "multivariate_market_lifecycle"  # combos only (kalshi-api.md §3.6)
BUSY_SHARE = 0.8  # of the actions, on the ``busy`` markets

Publish = Callable[[SimEvent], None]


@cache
def _kind(combo: bool) -> str:
    """The message type of a market's lifecycle event."""
    return _COMBO_CHANNEL if combo else _LIFECYCLE_CHANNEL


def _channel(combo: bool) -> str:
    """The channel of a market's (and its event's) lifecycle messages."""
    return _COMBO_CHANNEL if combo else _LIFECYCLE_CHANNEL


@cache
def _grid(ranges: tuple[PriceRange, ...]) -> tuple[int, ...]:
    """Every valid price strictly between 0 and 1 dollar, ascending."""
    prices: set[int] = set()
    for r in ranges:
        prices.update(range(r.start, r.end + 1, r.step))
    return tuple(p for p in sorted(prices) if 0 < p < DOLLAR)


def _dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def _uuid4(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))`` without the object: the variant and version
    bits set as UUID sets them (RFC 4122), the hex in 8-4-4-4-12 groups."""
    bits = (bits & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_price = cache(format_price)  # prices are grid values in [0, DOLLAR]: a bounded cache


@lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    """``"2022-11-22T20:44:01"`` of a second since the epoch (most messages share theirs
    with the one before)."""
    return format_rfc3339_us(seconds * 1_000_000, digits=0)[:-1]


# The rest of a delta's ``msg`` after its market's head (``_Active.delta_head``): every
# value is digits, '.', '-', ':', 'T', 'Z' or a side's name, nothing JSON escapes, so the
# bytes are orjson's of the same dict (tests/sim/test_engine.py checks it).
# The same for a ticker's msg after its market's head (``_Active.ticker_head``).
_TICKER_TAIL = (
    ',"price_dollars":"%s","yes_bid_dollars":"%s","yes_ask_dollars":"%s","volume_fp":"%s"'
    ',"open_interest_fp":"%s","dollar_volume":%d,"dollar_open_interest":%d'
    ',"yes_bid_size_fp":"%s","yes_ask_size_fp":"%s","last_trade_size_fp":"%s","ts":%d'
    ',"ts_ms":%d,"time":"%s"}'
)
_DELTA_TAIL = ',"price_dollars":"%s","delta_fp":"%s","side":"%s","ts":"%s","ts_ms":%d}'


class _Active:
    """Engine state of one trading market. ``yes_prices``/``no_prices``: the prices of the
    book's levels on each side, ascending, kept in step with the book by :meth:`Engine._delta`
    (the best bid is the last; a cancel draws from the list as it drew from
    ``sorted(levels)``, so the stream of draws is the same)."""

    __slots__ = (
        "book",
        "delta_head",
        "deltas",
        "dollar_oi",
        "dollar_volume",
        "grid",
        "info",
        "last_price",
        "last_size",
        "last_us",
        "market",
        "no_prices",
        "oi",
        "ticker_head",
        "top",
        "touched_top",
        "volume",
        "yes_prices",
    )

    def __init__(self, info: MarketInfo, book: OrderBook) -> None:
        self.info = info
        self.book = book
        self.grid = _grid(info.series.ranges)
        self.last_price: int | None = None
        self.last_size = 0
        self.volume = 0  # hundredths of a contract
        self.oi = 0
        self.dollar_volume = 0  # price units x size units
        self.dollar_oi = 0
        self.deltas = 0  # deltas published for this market
        self.last_us = 0  # the µs time of its last delta: the next is not earlier
        self.top: tuple[Any, Any] = (None, None)
        self.touched_top = False  # a delta since the last _set_top changed a best level
        self.yes_prices = sorted(book.yes)
        self.no_prices = sorted(book.no)
        # a delta's msg up to its market_id, as orjson encodes it (without the closing brace)
        self.delta_head = orjson.dumps({"market_ticker": info.ticker, "market_id": info.market_id})[
            :-1
        ]
        self.ticker_head = orjson.dumps(
            {"market_id": info.market_id, "market_ticker": info.ticker}
        )[:-1]
        self.market: MarketState = MarketState()  # the universe's state (_start_market)

    def prices(self, side: Side) -> list[int]:
        return self.yes_prices if side is _YES else self.no_prices


class Engine:
    """Generates the exchange's activity. ``pause()``/``resume()`` stop and restart the
    real-time loop (between two batches, so a paused engine has published everything it
    generated); ``step(n)`` runs ``n`` actions now, paused or not."""

    def __init__(
        self,
        universe: Universe,
        truth: Truth,
        *,
        rate: float,
        active: int,
        seed: int,
        clock: Callable[[], int],
        run_id: int = 0,
        lifecycle_every: float | None = None,
        busy: int | None = None,
        burst_every: float | None = None,
        burst_x: float = 20.0,
        burst_seconds: float = 10.0,
    ) -> None:
        self.universe = universe
        self.truth = truth
        self.rate = rate
        self.clock = clock
        self.lifecycle_every = lifecycle_every
        # Traffic shape: ``busy`` markets (the first trading ones) get BUSY_SHARE of the
        # actions, the rest share the remainder (most markets are quiet); every
        # ``burst_every`` seconds the rate is ``burst_x`` times higher for ``burst_seconds``.
        self.busy = busy
        self.burst_every = burst_every
        self.burst_x = burst_x
        self.burst_seconds = burst_seconds
        self.bursting = False
        self.bursts = 0
        self.late_s = 0.0  # how late the last tick ran (s)
        self.publish: Publish = lambda event: None
        self._rng = random.Random(seed)
        # What rng.randrange(n) and rng.choice draw for n > 0: the same draws, without
        # randrange's argument checks (~0.4 µs a call, several an action; issue 20).
        self._below: Callable[[int], int] = self._rng._randbelow  # type: ignore[attr-defined]
        self._seed = seed
        self.run_id = run_id
        # 128 bits drawn from (seed, run id): XORed into each trade id (a bijection, so ids
        # stay distinct within a run, and the engine's stream of draws is unchanged) and
        # named, 6 hex digits, in the event tickers of markets added at run time.
        salt = hashlib.blake2b(f"{seed}/{run_id}".encode(), digest_size=16).digest()
        self._salt = int.from_bytes(salt)
        self.run_tag = salt.hex()[:6].upper()
        self._paused = False
        self._resumed = trio.Event()
        self._active: dict[str, _Active] = {}
        self._order: list[str] = []
        self._states: list[_Active] = []  # the same markets' states, in the same order
        # the last ticker message of each market (kept after it settles): what a
        # ``send_initial_snapshot`` sends
        self.last_ticker: dict[str, SimEvent] = {}
        self._added = 0
        self._unopened: list[tuple[int, str, bool]] = []  # (open_us, ticker, trade) heap
        self._churns = 0
        self._last_ms = 0  # exchange times never go back (kalshi-api.md §2.4, issue 15)
        # Settling looks markets up by ticker: index them now, not in the middle of a run
        # (building the index takes seconds at 250 000 markets, a stall clients see).
        universe.build_index()
        open_count = 0
        for i in range(min(universe.size, active * 2 + 16)):
            if open_count >= active:
                break
            info = universe.info(i)
            if universe.status(info) == MarketStatus.ACTIVE:
                self._start_market(info)
                open_count += 1

    # --- control ----------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def active_tickers(self) -> list[str]:
        """Markets that trade, in the engine's order."""
        return list(self._order)

    def pause(self) -> None:
        """Stop generating (takes effect at once: no batch is half done)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._resumed.set()
        self._resumed = trio.Event()

    def step(self, n: int = 1) -> int:
        """Run ``n`` actions now; returns the number of messages they generated."""
        ts_ms = self._stamp(self.clock() // 1000)
        return sum(self._action(ts_ms) for _ in range(n))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Generate at ``rate`` messages/s until cancelled (idles while paused)."""
        task_status.started()
        deadline = trio.current_time()
        next_churn = deadline + (self.lifecycle_every or 0)
        next_burst = deadline + (self.burst_every or 0)
        burst_until = -math.inf
        carry = 0.0
        wake_at = -math.inf
        while True:
            deadline += TICK
            if deadline >= wake_at:  # a batch's first tick: wait until its last one is due
                wake_at = deadline + _WAIT
                await trio.sleep_until(wake_at)  # at once when behind, a checkpoint still
            if self._paused:
                await self._resumed.wait()
                # The schedule of bursts and churn counts running time only: a pause (the
                # gatherers starting, issue 20) longer than ``burst_every`` put a burst at
                # the first second after the resume, where no one expected one.
                idle = trio.current_time() - deadline
                next_churn += idle
                next_burst += idle
                burst_until += idle
                deadline += idle
                wake_at = -math.inf  # the next tick starts a batch
                continue
            now = trio.current_time()
            # behind schedule, beyond the batch's wait: this process short of CPU
            self.late_s = max(0.0, now - deadline - _WAIT)
            if deadline < now - 1.0:  # fell behind (a slow machine): do not try to catch up
                deadline = now
            if self.lifecycle_every and now >= next_churn:
                next_churn = now + self.lifecycle_every
                self._churn()
            if self._unopened:
                self.open_due()
            if self.burst_every and now >= next_burst:
                next_burst = now + self.burst_every
                burst_until = now + self.burst_seconds
                self.bursts += 1
            self.bursting = now < burst_until
            factor = _BURST_X if self._rng.random() < _BURST_P else _CALM_X
            if self.bursting:
                factor = self.burst_x
            carry += self.rate * TICK * factor
            # the tick's own time: the batch's earlier ticks run up to _WAIT late
            behind_ms = min(int((now - deadline) * 1000), round(_WAIT * 1000))
            base_ms = self.clock() // 1000 - behind_ms
            spent = 0
            below, action = self._below, self._action  # below(10): rng.randrange(10)'s draw
            while spent < carry and self._order:
                spent += action(self._stamp(base_ms + below(10)))
            carry -= spent

    def _stamp(self, ts_ms: int) -> int:
        """``ts_ms``, or the last time given if that is later: the exchange's times on a
        subscription never go back, even when several actions share a millisecond."""
        self._last_ms = max(self._last_ms, ts_ms)
        return self._last_ms

    # --- markets ----------------------------------------------------------------------------

    def _start_market(self, info: MarketInfo) -> _Active:
        book = OrderBook(info.ticker)
        grid = _grid(info.series.ranges)
        rng = self._rng
        fair = rng.randrange(len(grid) // 5, len(grid) * 4 // 5 + 1)
        gap = max(1, len(grid) // 50)
        for _ in range(rng.randrange(3, 9)):
            book.yes[grid[max(0, fair - gap - rng.randrange(0, gap * 6 + 1))]] = self._size()
        no_best = len(grid) - 1 - fair  # index of DOLLAR - grid[fair] (grids are symmetric)
        for _ in range(rng.randrange(3, 9)):
            book.no[grid[max(0, no_best - gap - rng.randrange(0, gap * 6 + 1))]] = self._size()
        state = _Active(info, book)
        self._active[info.ticker] = state
        self._order.append(info.ticker)
        self._states.append(state)
        self.truth.books[info.ticker] = book
        state.market = self.universe.states.setdefault(info.ticker, MarketState())
        self._set_top(state)
        return state

    def _size(self) -> int:
        rng = self._rng
        if rng.random() < 0.3:
            return (1 + self._below(199)) * SIZE_SCALE  # rng.randrange(1, 200)
        return 1 + self._below(49_999)  # rng.randrange(1, 50_000)

    def add_market(
        self,
        *,
        series: str | None = None,
        event_ticker: str | None = None,
        open_in_s: int = 0,
        close_in_s: int = 86_400,
        trade: bool = True,
        combo: bool = False,
        legs: list[tuple[str, str]] | None = None,
    ) -> str:
        """Create a market now (a new event unless ``event_ticker`` names one), announce it on
        ``market_lifecycle_v2`` (``event_lifecycle`` first for a new event, then ``created``)
        and, with ``trade``, start trading it. A ``combo`` (multivariate, ``KXMVE...``) market
        is announced on ``multivariate_market_lifecycle`` only, with type
        ``multivariate_market_lifecycle`` (kalshi-api.md §3.6); it combines ``legs``
        (``(market ticker, "yes"|"no")``, default 2-4 trading markets of distinct events
        drawn from the seed), listed as its ``mve_selected_legs``. Returns its ticker.
        Raises ValueError for an unknown series or leg."""
        self._added += 1
        chosen: tuple[tuple[str, str, str], ...] = ()
        if combo:
            series = COMBO_SERIES.ticker
            chosen = self._legs(legs)
        info_series = SERIES[0] if series is None else self.universe.series_named(series)
        if info_series is None:
            raise ValueError(f"unknown series {series!r}")
        now = self.clock()
        ts_ms = self._stamp(now // 1000)  # the run loop's times may be ahead of the clock
        new_event = event_ticker is None
        if event_ticker is None:
            event_ticker = f"{info_series.ticker}-SIM{self.run_tag}{self._added:04d}"
        open_us = now - now % 1_000_000 + open_in_s * 1_000_000
        close_us = open_us + close_in_s * 1_000_000
        info = self.universe.new_info(
            info_series, event_ticker, f"N{self._added}", open_us, close_us, chosen, self._salt
        )
        self.universe.add(info)
        if new_event:
            ev = EventLifecycle(
                event_ticker=event_ticker,
                series_ticker=info_series.ticker,
                title=f"{info_series.title}?",
                subtitle=f"Sim event {self._added}",
                collateral_return_type="MECNET",
                exchange_index=0,
            )
            body = {
                "event_ticker": ev.event_ticker,
                "exchange_index": 0,
                "title": ev.title,
                "subtitle": ev.subtitle,
                "collateral_return_type": ev.collateral_return_type,
                "series_ticker": ev.series_ticker,
            }
            self._emit("event_lifecycle", "", ts_ms, body, ev, channel=_channel(combo))
        market = self.universe.market(info)
        meta: dict[str, Any] = {
            "name": info.ticker,
            "title": market.title,
            "yes_sub_title": market.yes_sub_title,
            "no_sub_title": market.no_sub_title,
            "rules_primary": "Resolves to Yes if the sim says so.",
            "rules_secondary": "",
            "can_close_early": True,
            "event_ticker": event_ticker,
            "expected_expiration_ts": close_us // 1_000_000,
        }
        ranges = info.series.ranges
        created = LifecycleEvent(
            ticker=info.ticker,
            event_type="created",
            event_ticker=event_ticker,
            open_ts=open_us // 1_000_000 * 1_000_000,
            close_ts=close_us // 1_000_000 * 1_000_000,
            exchange_index=0,
            price_level_structure=info.series.price_level_structure,
            price_ranges=ranges,
            title=market.title,
        )
        body = {
            "market_ticker": info.ticker,
            "event_type": "created",
            "exchange_index": 0,
            "open_ts": open_us // 1_000_000,
            "close_ts": close_us // 1_000_000,
            "price_level_structure": info.series.price_level_structure,
            "price_ranges": [
                {
                    "start": format_price(r.start),
                    "end": format_price(r.end),
                    "step": format_price(r.step),
                }
                for r in ranges
            ],
            "additional_metadata": meta,
        }
        self._emit(_kind(combo), info.ticker, ts_ms, body, created, channel=_channel(combo))
        if open_us <= now:  # initialized -> active at open_time is implicit (no message)
            self._open(info, trade, ts_ms)
        else:
            heapq.heappush(self._unopened, (open_us, info.ticker, trade))
        return info.ticker

    def _open(self, info: MarketInfo, trade: bool, ts_ms: int) -> None:
        self.universe.states.setdefault(info.ticker, MarketState()).status = MarketStatus.ACTIVE
        if trade:
            state = self._start_market(info)
            self._publish_ticker(state, ts_ms)

    def open_due(self) -> list[str]:
        """Open the added markets whose open_time has come, as the exchange does: the
        status goes ``initialized`` -> ``active`` with no message (kalshi-api.md §5
        "Lifecycle"), and a market added with ``trade`` starts trading. Run by the engine's
        loop and before the REST API answers about markets; returns the tickers opened."""
        unopened = self._unopened
        if not unopened:
            return []
        now = self.clock()
        opened: list[str] = []
        while unopened and unopened[0][0] <= now:
            _, ticker, trade = heapq.heappop(unopened)
            state = self.universe.states.get(ticker)
            if state is not None and state.status is not None:
                continue  # settled before it opened
            info = self.universe.get(ticker)
            assert info is not None
            self._open(info, trade, self._stamp(now // 1000))
            opened.append(ticker)
        return opened

    def _legs(self, legs: list[tuple[str, str]] | None) -> tuple[tuple[str, str, str], ...]:
        """A combo's legs as ``(event ticker, market ticker, side)``: those given, or 2-4
        ordinary trading markets of distinct events, each on a random side."""
        if legs is None:
            # its own generator: adding a combo leaves the engine's stream of actions as is
            rng = random.Random(self._seed * 1_000_003 + self._added)
            count = rng.randrange(2, 5)
            plain = [t for t in self._order if not is_combo(t)]
            legs, events = [], set()
            for ticker in rng.sample(plain, min(len(plain), 4 * count)):
                event = self._active[ticker].info.event_ticker
                if event not in events:
                    events.add(event)
                    legs.append((ticker, rng.choice(("yes", "no"))))
                    if len(legs) == count:
                        break
        out = []
        for ticker, side in legs:
            info = self.universe.get(ticker)
            if info is None or side not in ("yes", "no"):
                raise ValueError(f"bad combo leg {ticker!r} {side!r}")
            out.append((info.event_ticker, ticker, side))
        return tuple(out)

    def settle_market(self, ticker: str, result: str = "yes") -> None:
        """Close (implicit: resting orders are cancelled, one delta per level), determine
        and settle ``ticker`` now; ``determined`` and ``settled`` go out on
        ``market_lifecycle_v2``. Raises KeyError for an unknown market."""
        info = self.universe.get(ticker)
        if info is None:
            raise KeyError(ticker)
        if result not in ("yes", "no"):
            raise ValueError("result must be 'yes' or 'no'")
        now = self.clock()
        ts_ms = self._stamp(now // 1000)  # the run loop's times may be ahead of the clock
        active = self._active.pop(ticker, None)
        if active is not None:
            del self._states[self._order.index(ticker)]
            self._order.remove(ticker)
            for side, levels in ((Side.YES, active.book.yes), (Side.NO, active.book.no)):
                for price, size in sorted(levels.items()):
                    self._delta(active, side, price, -size, ts_ms)
        state = self.universe.states.setdefault(ticker, MarketState())
        state.yes_bid = state.yes_ask = None  # the book is empty: no quotes left either
        combo = is_combo(ticker)
        value = DOLLAR if result == "yes" else 0
        state.status, state.result, state.settlement_value = MarketStatus.DETERMINED, result, value
        state.close_us = min(self.universe.close_us(info), now)
        state.determined_us = now
        seconds = now // 1_000_000
        determined = LifecycleEvent(
            ticker=ticker,
            event_type="determined",
            determination_ts=seconds * 1_000_000,
            result=result,
            settlement_value=value,
        )
        self._emit(
            _kind(combo),
            ticker,
            ts_ms,
            {
                "market_ticker": ticker,
                "event_type": "determined",
                "determination_ts": seconds,
                "result": result,
                "settlement_value": format_price(value),
            },
            determined,
            channel=_channel(combo),
        )
        state.status, state.settled_us = MarketStatus.FINALIZED, now
        settled = LifecycleEvent(
            ticker=ticker, event_type="settled", settled_ts=seconds * 1_000_000
        )
        self._emit(
            _kind(combo),
            ticker,
            ts_ms,
            {"market_ticker": ticker, "event_type": "settled", "settled_ts": seconds},
            settled,
            channel=_channel(combo),
        )

    def _churn(self) -> None:
        """Periodic lifecycle: settle the oldest trading market, list a new one; every
        other time the new one is a combo (the real exchange lists far more combos than
        plain markets, kalshi-api.md §5), announced on ``multivariate_market_lifecycle``."""
        self._churns += 1
        if len(self._order) > 1:
            self.settle_market(self._order[0], self._rng.choice(("yes", "no")))
        if self._churns % 2 == 0:
            self.add_market(combo=True)
        else:
            self.add_market(series=self._rng.choice(SERIES).ticker)

    # --- actions ----------------------------------------------------------------------------

    def _action(self, ts_ms: int) -> int:
        states = self._states
        if not states:
            return 0
        rng = self._rng
        busy = self.busy
        if busy and len(states) > busy and rng.random() < BUSY_SHARE:
            state = states[self._below(busy)]
        else:
            state = states[self._below(len(states))]
        before = self.truth.generated
        r = rng.random()
        if r < 0.55:
            self._add_liquidity(state, ts_ms)
        elif r < 0.85:
            self._cancel(state, ts_ms)
        else:
            self._trade(state, ts_ms)
        # the top of book can only have moved when a delta touched a best level (_delta)
        if state.touched_top:
            state.touched_top = False
            if self._set_top(state):
                self._publish_ticker(state, ts_ms)
        return self.truth.generated - before

    def _limit(self, state: _Active, side: Side) -> int:
        """Highest price a new bid on ``side`` may take without crossing the book."""
        other = state.no_prices if side is _YES else state.yes_prices
        best_other = other[-1] if other else 0
        return DOLLAR - best_other - 1

    def _add_liquidity(self, state: _Active, ts_ms: int) -> None:
        rng = self._rng
        side = _YES if rng.random() < 0.5 else _NO
        other = state.no_prices if side is _YES else state.yes_prices  # _limit, inlined
        limit = DOLLAR - (other[-1] if other else 0) - 1
        grid = state.grid
        top = bisect_right(grid, limit) - 1
        if top < 0:
            return
        # rng.expovariate(0.35), its formula (the same draw and float)
        index = max(0, top - int(-_log(1.0 - rng.random()) / 0.35))
        price = grid[index]
        size = self._size()
        self._delta(state, side, price, size, ts_ms)
        if rng.random() < 0.15:  # a cluster on the same level in the same millisecond
            for _ in range(rng.randrange(1, 4)):
                level = state.book.side(side).get(price, 0)
                change = -(1 + self._below(level)) if level and rng.random() < 0.5 else self._size()
                self._delta(state, side, price, change, ts_ms)

    def _cancel(self, state: _Active, ts_ms: int) -> None:
        rng = self._rng
        side = _YES if rng.random() < 0.5 else _NO
        prices = state.prices(side)
        if not prices:
            self._add_liquidity(state, ts_ms)
            return
        price = prices[self._below(len(prices))]  # rng.choice(prices)
        size = state.book.side(side)[price]
        amount = size if rng.random() < 0.4 else 1 + self._below(size)
        self._delta(state, side, price, -amount, ts_ms)

    def _trade(self, state: _Active, ts_ms: int) -> None:
        rng = self._rng
        taker = Side.YES if rng.random() < 0.5 else Side.NO
        # A YES taker lifts the best YES ask, i.e. fills the best NO bid, and vice versa.
        hit = Side.NO if taker is Side.YES else Side.YES
        prices = state.prices(hit)
        if not prices:
            self._add_liquidity(state, ts_ms)
            return
        price = prices[-1]
        count = min(state.book.side(hit)[price], self._size())
        yes_price = DOLLAR - price if hit is Side.NO else price
        trade = Trade(
            trade_id=_uuid4(rng.getrandbits(128) ^ self._salt),
            ticker=state.info.ticker,
            yes_price=yes_price,
            no_price=DOLLAR - yes_price,
            count=count,
            taker_side=taker,
            exchange_ts=ts_ms * 1000,
        )
        body = {
            "trade_id": trade.trade_id,
            "market_ticker": trade.ticker,
            "yes_price_dollars": _price(yes_price),
            "no_price_dollars": _price(trade.no_price),
            "count_fp": format_size(count),
            "taker_side": taker.value,
            "taker_outcome_side": taker.value,
            "taker_book_side": "bid" if taker is Side.YES else "ask",
            "is_block_trade": False,
            "ts": ts_ms // 1000,
            "ts_ms": ts_ms,
        }
        self._emit("trade", trade.ticker, ts_ms, body, trade)
        self._delta(state, hit, price, -count, ts_ms)
        state.last_price, state.last_size = yes_price, count
        state.volume += count
        state.dollar_volume += count * yes_price
        if rng.random() < 0.6:
            state.oi += count
            state.dollar_oi += count * yes_price
        else:
            closed = min(count, state.oi)
            state.oi -= closed
            state.dollar_oi = max(0, state.dollar_oi - closed * yes_price)
        market = state.market
        market.last_price, market.volume, market.open_interest = yes_price, state.volume, state.oi
        state.top = (None, None)  # totals changed: the ticker goes out

    def _delta(self, state: _Active, side: Side, price: int, change: int, ts_ms: int) -> None:
        if change == 0:
            return
        info = state.info
        # Like the exchange: `ts` carries microseconds, `ts_ms` the same moment in ms
        # (kalshi-gold15m: "…T03:45:40.722003Z" beside 1785901540722). The sub-millisecond
        # part is drawn from the market's delta count, so runs repeat exactly, and never
        # before the market's previous delta (kalshi-gold15m: none of 100 838 deltas goes
        # back in µs on its market, 24 281 repeat the previous time). ``ts_ms`` never goes
        # back (``_stamp``), so the time stays in its millisecond.
        state.deltas = count = state.deltas + 1
        micros = ts_ms * 1000 + (count * 7919) % 1000
        if micros < state.last_us:
            micros = state.last_us
        state.last_us = micros
        if side is _YES:
            levels, prices, side_text = state.book.yes, state.yes_prices, "yes"
        else:
            levels, prices, side_text = state.book.no, state.no_prices, "no"
        # OrderBook.apply_delta, inlined, keeping the level prices in step
        old = levels.get(price, 0)
        size = old + change
        if size > 0:
            levels[price] = size
            if not old:  # a level appeared
                insort(prices, price)
        elif size == 0:  # a level emptied
            del levels[price]
            del prices[bisect_left(prices, price)]
        else:
            raise BookError(f"{info.ticker}: {side} level {price} would have size {size}")
        # the best level changed, appeared or emptied; one below the best leaves the top
        if not prices or price >= prices[-1]:
            state.touched_top = True
        delta = BookDelta(info.ticker, info.market_id, side, price, change, micros)
        # format_size and format_rfc3339_us(micros, digits=6, trim=True), inlined
        if change >= 0:
            whole, cents = divmod(change, SIZE_SCALE)
            size_text = f"{whole}.{cents:02d}"
        else:
            whole, cents = divmod(-change, SIZE_SCALE)
            size_text = f"-{whole}.{cents:02d}"
        seconds, fraction = divmod(micros, 1_000_000)
        fraction_text = f"{fraction:06d}".rstrip("0")
        if fraction_text:
            ts_text = f"{_second(seconds)}.{fraction_text}Z"
        else:
            ts_text = _second(seconds) + "Z"
        head = state.delta_head
        body = head + (_DELTA_TAIL % (_price(price), size_text, side_text, ts_text, ts_ms)).encode()
        yes_body = None
        if side is not _YES:  # the same msg in yes-leg price (use_yes_price)
            yes_price = _price(DOLLAR - price)
            yes_body = head + (_DELTA_TAIL % (yes_price, size_text, "no", ts_text, ts_ms)).encode()
        event = SimEvent(
            "orderbook_delta", "orderbook_delta", info.ticker, ts_ms * 1000, body, delta, yes_body
        )
        self.truth.record(event)
        self.publish(event)

    # --- ticker -----------------------------------------------------------------------------

    def _set_top(self, state: _Active) -> bool:
        """Refresh the cached top of book; True when it changed."""
        book = state.book
        yes, no = state.yes_prices, state.no_prices
        top = (
            (yes[-1], book.yes[yes[-1]]) if yes else None,
            (DOLLAR - no[-1], book.no[no[-1]]) if no else None,
        )
        state.market.yes_bid, state.market.yes_ask = top
        if top == state.top:
            return False
        state.top = top
        return True

    def ticker_snapshot(self, ticker: str) -> SimEvent | None:
        """The current ticker message of a trading market, not recorded (a view, used for
        ``send_initial_snapshot``)."""
        state = self._active.get(ticker)
        if state is None:
            return None
        ts_ms = self.clock() // 1000
        body, model = self._ticker(state, ts_ms)
        return SimEvent("ticker", "ticker", ticker, ts_ms * 1000, body, model)

    def _publish_ticker(self, state: _Active, ts_ms: int) -> None:
        body, model = self._ticker(state, ts_ms)
        ticker = state.info.ticker
        event = SimEvent("ticker", "ticker", ticker, ts_ms * 1000, body, model)
        self.last_ticker[ticker] = event
        self.truth.record(event)
        self.publish(event)

    def _ticker(self, state: _Active, ts_ms: int) -> tuple[bytes, Ticker]:
        info = state.info
        bid, ask = state.top
        yes_bid, bid_size = bid if bid else (0, 0)
        yes_ask, ask_size = ask if ask else (DOLLAR, 0)
        last_price, last_size = state.last_price, state.last_size
        volume, oi = state.volume, state.oi
        dollar_volume = state.dollar_volume // (PRICE_SCALE * SIZE_SCALE)
        dollar_oi = state.dollar_oi // (PRICE_SCALE * SIZE_SCALE)
        ticker = Ticker(
            info.ticker,
            info.market_id,
            last_price,
            yes_bid,
            yes_ask,
            volume,
            oi,
            dollar_volume,
            dollar_oi,
            bid_size,
            ask_size,
            last_size,
            ts_ms * 1000,
        )
        # every size is >= 0: format_size's text, inlined; the time is
        # format_rfc3339_us(ts_ms * 1000, trim=True)'s
        seconds, millis = divmod(ts_ms, 1000)
        millis_text = f"{millis:03d}".rstrip("0")
        time_text = f"{_second(seconds)}.{millis_text}Z" if millis_text else _second(seconds) + "Z"
        tail = _TICKER_TAIL % (
            "" if last_price is None else _price(last_price),
            _price(yes_bid),
            _price(yes_ask),
            f"{volume // SIZE_SCALE}.{volume % SIZE_SCALE:02d}",
            f"{oi // SIZE_SCALE}.{oi % SIZE_SCALE:02d}",
            dollar_volume,
            dollar_oi,
            f"{bid_size // SIZE_SCALE}.{bid_size % SIZE_SCALE:02d}",
            f"{ask_size // SIZE_SCALE}.{ask_size % SIZE_SCALE:02d}",
            f"{last_size // SIZE_SCALE}.{last_size % SIZE_SCALE:02d}",
            seconds,
            ts_ms,
            time_text,
        )
        return state.ticker_head + tail.encode(), ticker

    def _emit(
        self,
        kind: str,
        ticker: str,
        ts_ms: int,
        body: dict[str, Any],
        model: Any,
        yes_body: bytes | None = None,
        *,
        channel: str | None = None,
    ) -> None:
        if channel is None:
            channel = _LIFECYCLE_CHANNEL if kind == "event_lifecycle" else kind
        event = SimEvent(kind, channel, ticker, ts_ms * 1000, _dumps(body), model, yes_body)
        self.truth.record(event)
        self.publish(event)
