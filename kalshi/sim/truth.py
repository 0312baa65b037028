"""Ground truth: every message the simulated exchange generated, in exchange order."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import orjson

from kalshi.book import OrderBook
from kalshi.models.lifecycle import EventLifecycle, LifecycleEvent
from kalshi.models.trade import Trade
from kalshi.sim.universe import MarketsView, Universe

__all__ = ["SimEvent", "Truth"]


class SimEvent(msgspec.Struct, frozen=True, gc=False):
    """One message the engine generated: its frame ``type``, the ``channel`` it travels
    on, the market (``""`` for event-level messages), the exchange time in µs, the encoded
    ``msg`` object, and the decoded model (what a correct client must end up with).
    ``yes_body`` is the ``msg`` in yes-leg prices for ``use_yes_price`` subscribers
    (set for no-side book deltas only)."""

    type: str
    channel: str
    ticker: str
    ts_us: int
    body: bytes
    model: Any
    yes_body: bytes | None = None

    def to_json(self) -> bytes:
        return b'{"type":"%s","ts_us":%d,"msg":%s}' % (self.type.encode(), self.ts_us, self.body)


_LINE = b'{"type":"%s","ts_us":%d,"msg":%s}\n'  # SimEvent.to_json() and a newline


class Truth:
    """What really happened. Read it after ``engine.pause()`` for a consistent view.

    * ``events``: every generated message (:class:`SimEvent`) in exchange order; empty when
      ``keep_events`` is False (long runs: ``stream`` writes them to disk instead).
    * ``generated``: how many messages were generated (kept or not).
    * ``trades``: trades (``kalshi.models.Trade``) in exchange order, from the absolute
      index ``trades_offset`` on: with ``trade_window_s`` only the last that many seconds
      are kept (what ``GET /markets/trades`` serves, i.e. what a backfill can ask for).
    * ``lifecycle``: lifecycle messages (``LifecycleEvent`` / ``EventLifecycle``) in order.
    * ``book(ticker)``: a copy of the engine's current book of a market.
    * ``markets``: ticker -> current ``Market`` (generated on access; cheap at 250k).
    * ``faults_injected``: Counter by fault kind, one per observable occurrence.
    * ``events_generated``: Counter by frame type.
    * ``undelivered``: Counter by reason of frames a subscriber should have had but did not
      get (``overflow``: dropped with error 25 after the subscriber fell too far behind).

    ``stream``: a file (opened for binary writing) that receives one JSON line per message
    as it is generated (:meth:`SimEvent.to_json`); :meth:`close_stream` appends the summary
    line. Memory then stays bounded whatever the run's length.
    """

    def __init__(
        self,
        universe: Universe,
        *,
        keep_events: bool = True,
        stream: BinaryIO | None = None,
        trade_window_s: float | None = None,
    ) -> None:
        self.events: list[SimEvent] = []
        self.keep_events = keep_events
        self.generated = 0
        self.trades: list[Trade] = []
        self.trades_offset = 0
        self.trade_window_us = None if trade_window_s is None else int(trade_window_s * 1e6)
        self.lifecycle: list[LifecycleEvent | EventLifecycle] = []
        self.markets = MarketsView(universe)
        self.faults_injected: Counter[str] = Counter()
        self.events_generated: Counter[str] = Counter()
        self.undelivered: Counter[str] = Counter()
        self.books: dict[str, OrderBook] = {}
        self.stream = stream

    def book(self, ticker: str) -> OrderBook:
        """A copy of the engine's current book (empty for a market without one)."""
        book = self.books.get(ticker)
        return book.copy() if book is not None else OrderBook(ticker)

    def record(self, event: SimEvent) -> None:
        self.generated += 1
        if self.keep_events:
            self.events.append(event)
        kind = event.type
        if self.stream is not None:
            self.stream.write(_LINE % (kind.encode(), event.ts_us, event.body))
        self.events_generated[kind] += 1
        model = event.model
        cls = type(model)
        if cls is Trade:
            self.trades.append(model)
            if self.trade_window_us is not None:
                self._trim_trades(model.exchange_ts - self.trade_window_us)
        elif cls is LifecycleEvent or cls is EventLifecycle:
            self.lifecycle.append(model)

    def _trim_trades(self, oldest_us: int) -> None:
        """Forget trades older than ``oldest_us`` (in chunks: amortised O(1) a trade)."""
        trades = self.trades
        if len(trades) < 2048 or trades[1024].exchange_ts >= oldest_us:
            return
        cut = bisect_left(trades, oldest_us, key=lambda t: t.exchange_ts)
        del trades[:cut]
        self.trades_offset += cut

    def summary(self) -> dict[str, object]:
        return {
            "type": "summary",
            "events_generated": dict(self.events_generated),
            "faults_injected": dict(self.faults_injected),
            "undelivered": dict(self.undelivered),
        }

    def close_stream(self) -> None:
        """Append the summary line to ``stream`` and close it (idempotent)."""
        if self.stream is not None and not self.stream.closed:
            self.stream.write(orjson.dumps(self.summary()) + b"\n")
            self.stream.close()

    def write_jsonl(self, path: Path) -> int:
        """Write one JSON line per kept message, then a summary line; returns lines."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for event in self.events:
                out.write(event.to_json() + b"\n")
            out.write(orjson.dumps(self.summary()) + b"\n")
        return len(self.events) + 1
