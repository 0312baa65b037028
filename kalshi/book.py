"""Pure order-book state for one market.

Kalshi books are bids only: YES bids and NO bids (NO bids in NO-leg price by default).
The YES ask ladder is derived: a NO bid at price p is a YES ask at ``DOLLAR - p``.
Impossible states are reported, not asserted: ``apply_delta`` raises :class:`BookError` on a
negative size (and leaves the book unchanged), ``problems()`` lists a crossed book.
"""

from __future__ import annotations

from kalshi.errors import BookError
from kalshi.models.book import BookDelta, BookSnapshot, Level, Side
from kalshi.models.units import DOLLAR

__all__ = ["OrderBook"]

_YES = Side.YES  # a module constant: an Enum member read through its class costs ~40 ns


class OrderBook:
    """Levels of one market as ``price -> size`` dicts (exact integer units)."""

    __slots__ = ("no", "ticker", "yes")

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self.yes: dict[int, int] = {}
        self.no: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"OrderBook({self.ticker!r}, yes={self.levels(Side.YES)}, no={self.levels(Side.NO)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self.yes == other.yes and self.no == other.no

    __hash__ = None  # type: ignore[assignment]  # mutable

    @classmethod
    def from_snapshot(cls, snapshot: BookSnapshot) -> OrderBook:
        book = cls(snapshot.ticker)
        book.apply_snapshot(snapshot)
        return book

    def copy(self) -> OrderBook:
        book = OrderBook(self.ticker)
        book.yes = dict(self.yes)
        book.no = dict(self.no)
        return book

    def apply_snapshot(self, snapshot: BookSnapshot) -> None:
        """Replace both sides. Raises BookError for a non-positive size in the snapshot."""
        yes = dict(snapshot.yes)
        no = dict(snapshot.no)
        for name, side in (("yes", yes), ("no", no)):
            for price, size in side.items():
                if size <= 0 or not 0 <= price <= DOLLAR:
                    raise BookError(f"{self.ticker}: snapshot {name} level {price} has size {size}")
        self.yes, self.no = yes, no

    def apply_delta(self, delta: BookDelta) -> None:
        """``size += delta``; the level is removed at 0. A negative result raises BookError
        and leaves the book unchanged."""
        side = self.yes if delta.side is _YES else self.no
        size = side.get(delta.price, 0) + delta.delta
        if size > 0:
            side[delta.price] = size
        elif size == 0:
            side.pop(delta.price, None)
        else:
            raise BookError(
                f"{self.ticker}: {delta.side} level {delta.price} would have size {size}"
            )

    def side(self, side: Side) -> dict[int, int]:
        return self.yes if side is Side.YES else self.no

    def levels(self, side: Side) -> tuple[Level, ...]:
        """Bids of ``side``, ascending by price, as the exchange sends them."""
        return tuple(sorted(self.side(side).items()))

    def snapshot(self, market_id: str = "") -> BookSnapshot:
        return BookSnapshot(self.ticker, market_id, self.levels(Side.YES), self.levels(Side.NO))

    def best_yes_bid(self) -> Level | None:
        return max(self.yes.items()) if self.yes else None

    def best_no_bid(self) -> Level | None:
        return max(self.no.items()) if self.no else None

    def best_yes_ask(self) -> Level | None:
        """Derived from the best NO bid: (DOLLAR - price, size)."""
        best = self.best_no_bid()
        return None if best is None else (DOLLAR - best[0], best[1])

    def yes_asks(self) -> tuple[Level, ...]:
        """YES asks, ascending by price (derived from NO bids)."""
        return tuple(sorted((DOLLAR - p, s) for p, s in self.no.items()))

    def spread(self) -> int | None:
        bid, ask = self.best_yes_bid(), self.best_yes_ask()
        return None if bid is None or ask is None else ask[0] - bid[0]

    def depth(self, side: Side) -> int:
        """Total size resting on ``side``."""
        return sum(self.side(side).values())

    def problems(self) -> list[str]:
        """Impossible states: non-positive sizes, prices off [0, 1], a crossed book."""
        out = []
        for name, levels in (("yes", self.yes), ("no", self.no)):
            for price, size in levels.items():
                if size <= 0:
                    out.append(f"{name} level {price} has size {size}")
                if not 0 <= price <= DOLLAR:
                    out.append(f"{name} level {price} is outside [0, {DOLLAR}]")
        spread = self.spread()
        if spread is not None and spread <= 0:
            out.append(f"crossed book: yes bid >= yes ask (spread {spread})")
        return out

    def __len__(self) -> int:
        return len(self.yes) + len(self.no)
