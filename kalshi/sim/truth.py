"""Ground truth: every message the simulated exchange generated, in exchange order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from attrs import frozen

from kalshi.book import OrderBook
from kalshi.models.lifecycle import EventLifecycle, LifecycleEvent
from kalshi.models.trade import Trade
from kalshi.sim.universe import MarketsView, Universe

__all__ = ["SimEvent", "Truth"]


@frozen
class SimEvent:
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


class Truth:
    """What really happened. Read it after ``engine.pause()`` for a consistent view.

    * ``events``: every generated message (:class:`SimEvent`) in exchange order.
    * ``trades``: every trade (``kalshi.models.Trade``) in exchange order.
    * ``lifecycle``: lifecycle messages (``LifecycleEvent`` / ``EventLifecycle``) in order.
    * ``book(ticker)``: a copy of the engine's current book of a market.
    * ``markets``: ticker -> current ``Market`` (generated on access; cheap at 250k).
    * ``faults_injected``: Counter by fault kind, one per observable occurrence.
    * ``events_generated``: Counter by frame type.
    * ``undelivered``: Counter by reason of frames a subscriber should have had but did not
      get (``overflow``: dropped with error 25 after the subscriber fell too far behind).
    """

    def __init__(self, universe: Universe) -> None:
        self.events: list[SimEvent] = []
        self.trades: list[Trade] = []
        self.lifecycle: list[LifecycleEvent | EventLifecycle] = []
        self.markets = MarketsView(universe)
        self.faults_injected: Counter[str] = Counter()
        self.events_generated: Counter[str] = Counter()
        self.undelivered: Counter[str] = Counter()
        self.books: dict[str, OrderBook] = {}

    def book(self, ticker: str) -> OrderBook:
        """A copy of the engine's current book (empty for a market without one)."""
        book = self.books.get(ticker)
        return book.copy() if book is not None else OrderBook(ticker)

    def record(self, event: SimEvent) -> None:
        self.events.append(event)
        self.events_generated[event.type] += 1
        model = event.model
        if isinstance(model, Trade):
            self.trades.append(model)
        elif isinstance(model, LifecycleEvent | EventLifecycle):
            self.lifecycle.append(model)

    def write_jsonl(self, path: Path) -> int:
        """Write one JSON line per generated message, then a summary line; returns lines."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for event in self.events:
                out.write(event.to_json() + b"\n")
            summary = {
                "type": "summary",
                "events_generated": dict(self.events_generated),
                "faults_injected": dict(self.faults_injected),
                "undelivered": dict(self.undelivered),
            }
            out.write(orjson.dumps(summary) + b"\n")
        return len(self.events) + 1
