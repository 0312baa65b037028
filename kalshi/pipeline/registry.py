"""The in-memory market registry: every market we know, its status, and which we record.

Fed by REST listings (discovery and periodic re-lists) and by lifecycle messages; tells
its listener which markets became live (to subscribe) or retired (to drop). Pure state: the
caller does the I/O and writes the returned rows.
"""

from __future__ import annotations

import bisect
import hashlib
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import orjson

from kalshi.errors import ConfigError
from kalshi.models.lifecycle import LifecycleEvent
from kalshi.models.market import Market
from kalshi.models.rows import MarketRow

__all__ = ["LIVE_STATUSES", "MARKET_STATUSES", "MarketRegistry", "Shard", "parse_shard"]

LIVE_STATUSES = frozenset({"initialized", "inactive", "active"})
# Market.status values of the current API (kalshi-api.md §4.4 Market object).
MARKET_STATUSES = (
    "initialized",
    "inactive",
    "active",
    "closed",
    "determined",
    "disputed",
    "amended",
    "finalized",
)
_EVENT_STATUS = {
    "created": "initialized",
    "activated": "active",
    "deactivated": "inactive",
    "determined": "determined",
    "settled": "finalized",
}


@attrs.frozen
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, market: Market) -> bool:
        """Markets of one event stay together: the shard is chosen by event ticker."""
        if self.count == 1:
            return True
        key = (market.event_ticker or market.ticker).encode()
        # BLAKE2b, not CRC-32: CRC's low bits follow the tickers' shared patterns and
        # split real series badly (a 62/38 split seen on 60 events for 2 shards).
        digest = hashlib.blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index


def parse_shard(text: str) -> Shard:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"shard: expected i/n like 0/3, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard: expected 0 <= i < n, got {text!r}")
    return Shard(index, count)


Listener = Callable[[list[str], list[str]], None]
"""``(now_live, retired)`` tickers after a change."""


class MarketRegistry:
    """``markets``: ticker -> :class:`Market` without its ``raw`` text. The exchange's object
    as received is kept aside, zlib-compressed with its BLAKE2b digest (about 600 bytes
    instead of 1 300 a market: ~180 MB less at 250 000 markets), for the ``markets`` rows
    and to tell a re-listed market that changed from one that did not."""

    def __init__(self, gatherer_id: str, shard: Shard = Shard()) -> None:
        self.gatherer_id = gatherer_id
        self.shard = shard
        self.markets: dict[str, Market] = {}
        self._raw: dict[str, tuple[bytes, bytes]] = {}  # ticker -> (digest, zlib(raw))
        self._ranges: dict[Any, Any] = {}  # one copy of each price grid
        self.live: set[str] = set()
        self._sorted: list[str] | None = None
        self.listeners: list[Listener] = []
        self.counts: Counter[str] = Counter()  # status -> markets held (0 kept once seen)
        self.finalized: dict[str, int] = {}  # ticker -> when first held as finalized (µs)
        self.unopened: dict[str, int] = {}  # ticker -> open_time (µs) of an initialized one

    # --- changes ----------------------------------------------------------------------

    def upsert(self, markets: Iterable[Market], now_us: int) -> list[MarketRow]:
        """Merge listed markets; returns rows for the ``markets`` table."""
        rows: list[MarketRow] = []
        added: list[str] = []
        retired: list[str] = []
        for market in markets:
            if not self.shard.owns(market):
                continue
            ticker = market.ticker
            raw = market.raw.encode()
            digest = hashlib.blake2b(raw, digest_size=16).digest() if raw else b""
            kept = self._raw.get(ticker)
            slim = self._slim(market)
            old = self.markets.get(ticker)
            if old == slim and (kept[0] if kept else b"") == digest:
                continue
            if old is None:
                self._sorted = None
            else:
                self.counts[old.status] -= 1
            self.counts[slim.status] += 1
            self.markets[ticker] = slim
            self._follow(slim, now_us)
            if raw:
                self._raw[ticker] = (digest, zlib.compress(raw, 1))
            else:
                self._raw.pop(ticker, None)
            rows.append(self._row(market, now_us))
            self._track(market, added, retired)
        self._notify(added, retired)
        return rows

    def apply(self, event: LifecycleEvent, now_us: int) -> list[MarketRow]:
        """Follow a ``market_lifecycle_v2`` event; returns the market's new row (if ours)."""
        market = self.markets.get(event.ticker)
        if market is None:
            if event.event_type != "created":
                return []
            market = Market(
                ticker=event.ticker,
                event_ticker=event.event_ticker,
                status="initialized",
                title=event.title,
                open_time=event.open_ts,
                close_time=event.close_ts,
                price_level_structure=event.price_level_structure,
                price_ranges=event.price_ranges,
                exchange_index=event.exchange_index or 0,
            )
        else:
            changes: dict[str, Any] = {}
            status = _EVENT_STATUS.get(event.event_type)
            if status is not None:
                changes["status"] = status
            if event.close_ts is not None:
                changes["close_time"] = event.close_ts
            if event.result:
                changes["result"] = event.result
            if event.settlement_value is not None:
                changes["settlement_value"] = event.settlement_value
            if event.price_level_structure:
                changes["price_level_structure"] = event.price_level_structure
                changes["price_ranges"] = event.price_ranges
            kept = self._raw.get(event.ticker)
            if kept is not None:
                changes["raw"] = zlib.decompress(kept[1]).decode()
            market = attrs.evolve(market, **changes)
        return self.upsert([market], now_us)

    def open_due(self, now_us: int) -> list[MarketRow]:
        """Markets still ``initialized`` whose ``open_time`` is at or before ``now_us`` become
        ``active``: the exchange opens a market at its open_time without a lifecycle event
        (kalshi-api.md §5 "Lifecycle"), so a market a ``created`` event made would otherwise
        stay ``initialized`` until the next listing. Returns their new rows (the payload is
        the last object received, as for a lifecycle change)."""
        due = [t for t, opens in self.unopened.items() if opens <= now_us]
        if not due:
            return []
        opened = []
        for ticker in due:
            market = self.markets[ticker]
            kept = self._raw.get(ticker)
            raw = zlib.decompress(kept[1]).decode() if kept is not None else ""
            opened.append(attrs.evolve(market, status="active", raw=raw))
        return self.upsert(opened, now_us)

    def forget(self, before_us: int) -> list[str]:
        """Drop the markets first held as ``finalized`` before ``before_us`` and no longer
        live (their ``markets`` rows stay in the database); returns their tickers. A
        finalized market produces no more data; without this the registry would grow with
        every market the exchange ever settles."""
        gone = [t for t, at in self.finalized.items() if at < before_us and t not in self.live]
        for ticker in gone:
            market = self.markets.pop(ticker)
            self.counts[market.status] -= 1
            self._raw.pop(ticker, None)
            del self.finalized[ticker]
        if gone:
            self._sorted = None
        return gone

    def _follow(self, market: Market, now_us: int) -> None:
        """Keep :attr:`finalized` and :attr:`unopened` in step with ``market``'s status."""
        ticker = market.ticker
        if market.status == "finalized":
            self.finalized.setdefault(ticker, now_us)
        else:
            self.finalized.pop(ticker, None)
        if market.status == "initialized" and market.open_time is not None:
            self.unopened[ticker] = market.open_time
        else:
            self.unopened.pop(ticker, None)

    def _slim(self, market: Market) -> Market:
        """``market`` without ``raw``, its repeated values shared (statuses, event tickers
        and price grids are the same for many markets)."""
        intern = sys.intern
        ranges = self._ranges.setdefault(market.price_ranges, market.price_ranges)
        return attrs.evolve(
            market,
            raw="",
            event_ticker=intern(market.event_ticker),
            status=intern(market.status),
            market_type=intern(market.market_type),
            result=intern(market.result),
            price_level_structure=intern(market.price_level_structure),
            price_ranges=ranges,
        )

    def _track(self, market: Market, added: list[str], retired: list[str]) -> None:
        ticker = market.ticker
        if market.status in LIVE_STATUSES:
            if ticker not in self.live:
                self.live.add(ticker)
                added.append(ticker)
        elif ticker in self.live:
            self.live.discard(ticker)
            retired.append(ticker)

    def _notify(self, added: list[str], retired: list[str]) -> None:
        if added or retired:
            for listener in self.listeners:
                listener(added, retired)

    def _row(self, market: Market, now_us: int) -> MarketRow:
        # The exchange's object as received; decoded fields for a lifecycle-made market.
        payload = (
            market.raw
            or orjson.dumps(attrs.asdict(market, filter=lambda a, _: a.name != "raw")).decode()
        )
        return MarketRow(
            ticker=market.ticker,
            event_ticker=market.event_ticker,
            status=market.status,
            market_type=market.market_type,
            title=market.title,
            open_time=market.open_time,
            close_time=market.close_time,
            updated_at=now_us,
            gatherer_id=self.gatherer_id,
            payload=payload,
        )

    # --- views ------------------------------------------------------------------------

    def status_counts(self) -> Counter[str]:
        """Markets held by status (statuses with none left out)."""
        return Counter({status: n for status, n in self.counts.items() if n})

    def page(
        self, status: str | None, prefix: str | None, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        """One page of ``/debug/markets``: tickers in order after ``cursor``. ``total`` is
        how many markets match ``status`` and ``prefix`` (every page), ``tracked`` how many
        the registry holds."""
        if self._sorted is None:
            self._sorted = sorted(self.markets)
        tickers = self._sorted
        low = bisect.bisect_left(tickers, prefix) if prefix else 0
        high = bisect.bisect_left(tickers, _after_prefix(prefix)) if prefix else len(tickers)
        if status:
            matching = sum(1 for t in tickers[low:high] if self.markets[t].status == status)
        else:
            matching = high - low
        start = bisect.bisect_right(tickers, cursor) if cursor else 0
        if prefix:
            start = max(start, bisect.bisect_left(tickers, prefix))
        items: list[dict[str, Any]] = []
        last: str | None = None
        for ticker in tickers[start:]:
            if prefix and not ticker.startswith(prefix):
                break
            market = self.markets[ticker]
            last = ticker
            if status and market.status != status:
                continue
            items.append(
                {
                    "ticker": ticker,
                    "event_ticker": market.event_ticker,
                    "status": market.status,
                    "live": ticker in self.live,
                    "open_time": market.open_time,
                    "close_time": market.close_time,
                }
            )
            if len(items) == limit:
                break
        more = last is not None and last != tickers[-1] and len(items) == limit
        return {
            "markets": items,
            "cursor": last if more else None,
            "total": matching,
            "tracked": len(self.markets),
        }


def _after_prefix(prefix: str) -> str:
    """The least string above every string starting with ``prefix`` (tickers are ASCII)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
