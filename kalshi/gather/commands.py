"""The commands one WebSocket session sent and the exchange has not answered yet.

Every command carries an ``id``; the exchange's reply echoes it (kalshi-api.md §2.1, §2.2):
``subscribed`` or ``ok`` to a subscribe, ``ok`` to ``add_markets``/``delete_markets`` and to
``list_subscriptions``, ``error`` to any of them. ``get_snapshot`` is answered with snapshots
(which may or may not carry the id), so only its errors are matched and it has no deadline.
A command still unanswered ``timeout`` seconds after it was sent ends the session, unless
its reply cannot have come yet because we are behind in reading (``Connection._reply_due``).
"""

from __future__ import annotations

import math

import trio
from attrs import define

from kalshi.models.frames import Message

__all__ = ["REPLY_TYPES", "InFlight", "Sent"]

REPLY_TYPES = frozenset({"subscribed", "ok", "error"})
_UNTIMED = frozenset({"get_snapshot"})


@define
class Sent:
    """One command: ``action`` is ``subscribe``, ``add_markets``, ``delete_markets``,
    ``get_snapshot`` or ``list_subscriptions``; ``at`` is the Trio time it was sent,
    ``wall_us`` the wall clock's (µs, 0 when unknown)."""

    ident: int
    action: str
    tickers: tuple[str, ...]
    at: float
    wall_us: int = 0


class InFlight:
    """Sent commands by id until their reply arrives."""

    def __init__(self) -> None:
        self._sent: dict[int, Sent] = {}
        self.changed = trio.Event()  # set whenever a command is added

    def __len__(self) -> int:
        return len(self._sent)

    def add(self, sent: Sent) -> None:
        self._sent[sent.ident] = sent
        self.changed.set()
        self.changed = trio.Event()

    def pending(self, action: str) -> list[Sent]:
        return [s for s in self._sent.values() if s.action == action]

    def answer(self, message: Message) -> Sent | None:
        """The command ``message`` answers (removed from the table), or None."""
        if message.id is None or message.type not in REPLY_TYPES:
            return None
        sent = self._sent.get(message.id)
        if sent is None or (sent.action in _UNTIMED and message.type != "error"):
            return None
        return self._sent.pop(message.id)

    def deadline(self, timeout: float) -> tuple[float, Sent | None]:
        """When the oldest timed command runs out (``inf`` with none), and which it is.
        Untimed commands older than ``timeout`` are forgotten (their error would have come)."""
        now = trio.current_time()
        for old in [s for s in self._sent.values() if s.action in _UNTIMED]:
            if old.at + timeout <= now:
                del self._sent[old.ident]
        timed = [s for s in self._sent.values() if s.action not in _UNTIMED]
        if not timed:
            return math.inf, None
        oldest = min(timed, key=lambda s: s.at)
        return oldest.at + timeout, oldest
