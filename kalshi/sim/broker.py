"""The simulator's side of the WebSocket: a :class:`Broker` fanning the engine's messages
out to subscriptions, and :class:`SimSession`, the protocol's session (kalshi/http/ws.py)
with the frames only a fault sends (malformed, a crossing delta)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import orjson

from kalshi.http.ws import COMBO_LIFECYCLE, LIFECYCLE, ORDERBOOK, Session, Subscription, envelope
from kalshi.models.units import DOLLAR, format_price, format_size
from kalshi.sim.truth import SimEvent

if TYPE_CHECKING:
    from kalshi.sim.server import SimExchange

__all__ = ["WITH_DATA", "Broker", "SimSession"]

# The channels the engine generates messages for.
WITH_DATA: Final = frozenset({ORDERBOOK, "trade", "ticker", LIFECYCLE, COMBO_LIFECYCLE})


class Broker:
    """Routes each engine message to the subscriptions that want it."""

    def __init__(self) -> None:
        self._all: dict[str, set[Subscription]] = {c: set() for c in WITH_DATA}
        self._by_ticker: dict[str, dict[str, set[Subscription]]] = {c: {} for c in WITH_DATA}

    def add(self, sub: Subscription, tickers: Iterable[str] | None) -> None:
        if sub.channel not in WITH_DATA:
            return
        if tickers is None:
            self._all[sub.channel].add(sub)
            return
        index = self._by_ticker[sub.channel]
        for ticker in tickers:
            index.setdefault(ticker, set()).add(sub)

    def remove(self, sub: Subscription, tickers: Iterable[str] | None = None) -> None:
        """Stop routing ``tickers`` (default: everything) to ``sub``."""
        if sub.channel not in WITH_DATA:
            return
        self._all[sub.channel].discard(sub)
        index = self._by_ticker[sub.channel]
        for ticker in sub.tickers or () if tickers is None else tickers:
            subs = index.get(ticker)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del index[ticker]

    def publish(self, event: SimEvent) -> None:
        """Deliver ``event`` to every subscription of its channel that wants its market
        (``yes_body`` to those with ``use_yes_price``, when it has one)."""
        channel = event.channel
        everything = self._all[channel]
        subs = self._by_ticker[channel].get(event.ticker)
        if not everything and not subs:
            return
        kind, body, yes_body = event.type, event.body, event.yes_body
        # copies: a delivery can end a subscription (error 25) and remove it mid-loop
        for group in (everything, subs):
            if group:
                for sub in tuple(group):
                    sub.session.deliver(
                        sub, kind, yes_body if yes_body and sub.use_yes_price else body
                    )


class SimSession(Session):
    """A session of the simulated exchange: the protocol plus the frames faults send."""

    feed: SimExchange

    def send_crossing_delta(self) -> bool:
        """One order-book delta that crosses a subscribed market's book (a YES bid at its
        YES ask), sent on its subscription with the next seq but never applied to the
        truth: a glitch that only a fresh snapshot repairs. False when this session has no
        subscribed market with a NO bid."""
        for sub in self.subs.values():
            if sub.channel != ORDERBOOK or sub.use_yes_price:
                continue
            for ticker in sorted(sub.tickers or ()):
                book = self.feed.truth.books.get(ticker)
                if book is None or not book.no:
                    continue
                price = DOLLAR - max(book.no)  # the YES ask
                ts_ms = self.feed.now_ms()
                body = {
                    "market_ticker": ticker,
                    "market_id": self.feed.market_id(ticker),
                    "price_dollars": format_price(price),
                    "delta_fp": format_size(100),
                    "side": "yes",
                    "ts_ms": ts_ms,
                }
                self.push(
                    envelope("orderbook_delta", orjson.dumps(body), sid=sub.sid, seq=sub.next_seq())
                )
                return True
        return False

    def _sid_for(self, channel: str) -> int:
        """The sid a frame of ``channel`` would carry on this session: that channel's
        subscription, else any of this session's, else 1."""
        sids = [sub.sid for sub in self.subs.values() if sub.channel == channel]
        return sids[0] if sids else min(self.subs, default=1)

    def send_malformed(self, kind: str) -> None:
        channel = (
            "trade"
            if kind == "json"
            else "market_lifecycle_v2"
            if kind == "unknown_type"
            else "ticker"
        )
        sid = str(self._sid_for(channel)).encode()
        if kind == "json":
            payload = b'{"type":"trade","sid":' + sid + b',"seq":,"msg":{nope'
        elif kind == "truncated":
            whole = (
                b'{"type":"ticker","sid":'
                + sid
                + b',"msg":{"market_ticker":"KXHIGHNY-26NOV25-T52",'
            )
            payload = whole[: len(whole) // 2]
        elif kind == "unknown_type":
            payload = (
                b'{"type":"market_mood","sid":'
                + sid
                + b',"msg":{"market_ticker":"X","mood":"calm"}}'
            )
        else:
            payload = (
                b'{"type":"ticker","sid":' + sid + b',"msg":{"market_id":"0","market_ticker":"X",'
                b'"price_dollars":0.48,"yes_bid_dollars":"0.4500","yes_ask_dollars":"0.5300",'
                b'"volume_fp":"1.00","open_interest_fp":"1.00","dollar_volume":1,'
                b'"dollar_open_interest":1,"yes_bid_size_fp":"1.00","yes_ask_size_fp":"1.00",'
                b'"last_trade_size_fp":"1.00","ts":1,"ts_ms":1000,"time":"1970-01-01T00:00:01Z"}}'
            )
        self.push(payload)
