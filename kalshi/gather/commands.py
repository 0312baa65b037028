"""The commands one WebSocket session sent and the exchange has not answered yet.

Every command carries an ``id``; the exchange's reply echoes it (kalshi-api.md §2.1, §2.2):
``subscribed`` or ``ok`` to a subscribe, ``ok`` to ``add_markets``/``delete_markets`` and to
``list_subscriptions``, ``error`` to any of them. ``get_snapshot`` is answered with snapshots
(which may or may not carry the id), so only its errors are matched and it has no deadline.
A command still unanswered ``timeout`` seconds after it was sent ends the session, unless
its reply cannot have come yet because we are behind in reading (``Connection._reply_due``).

A burst of refusals (error 26 while the gatherer halves its batches to find a subscription's
cap, error 27 while it paces) is one *episode* (:class:`Refusals`): each refusal is logged at
debug, the episode in one line when it ends (issue F6).
"""

from __future__ import annotations

import math
from collections import Counter

import trio
from attrs import Factory, define

from kalshi.models.frames import Message

__all__ = ["EPISODE_MAX_S", "REPLY_TYPES", "InFlight", "Refusals", "Sent"]

REPLY_TYPES = frozenset({"subscribed", "ok", "error"})
_UNTIMED = frozenset({"get_snapshot"})
EPISODE_MAX_S = 60.0  # a refusal episode that does not end is summed up this often (s)


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

    def timed(self) -> int:
        """Commands awaiting a reply that is sure to come (all but ``get_snapshot``)."""
        return sum(s.action not in _UNTIMED for s in self._sent.values())

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


@define
class Refusals:
    """One refusal episode of a connection: from its first refused command until its
    subscription settles (nothing asked for unanswered, nothing left to ask for, no pause
    running) or ``EPISODE_MAX_S`` has passed. ``began`` is Trio time (s); ``commands``
    counts the refused commands by ``"<action> <code> <message>"``; ``markets`` the
    markets those commands named (one market refused twice counts twice); ``moved`` the
    markets handed to another connection; ``gaps`` those recorded refused (a
    ``subscription_refused`` gap row each)."""

    began: float
    commands: Counter[str] = Factory(Counter)
    markets: int = 0
    moved: int = 0
    gaps: int = 0

    def summary(self, name: str, now: float, subscribed: int, refused: int) -> str:
        """The episode in one line; ``subscribed`` and ``refused`` are the connection's
        markets now."""
        kinds = ", ".join(f"{key}: {n}" for key, n in sorted(self.commands.items()))
        kinds = f" ({kinds})" if kinds else " (the subscription is full)"
        return (
            f"{name}: {self.commands.total()} command(s) refused in {now - self.began:.1f} s"
            f"{kinds}, naming {self.markets} market(s); {self.moved} moved to another"
            f" connection, {self.gaps} recorded refused; now {subscribed} subscribed,"
            f" {refused} refused"
        )
