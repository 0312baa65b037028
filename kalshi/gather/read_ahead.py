"""One memory bound for the read-ahead of every whole-exchange socket
(``websocket.read_ahead_bytes``).

The whole-exchange connections (``ticker``, ``trade``, the lifecycle channels) read ahead of
their handling so that a backlog waits in the gatherer's memory, not in the exchange's
buffer for the subscription (error 25, terminal; kalshi-api.md §2.3). They share one budget
in bytes: a frame read costs its length plus :data:`FRAME_OVERHEAD` (what holding it costs
beside its text: the stamped tuple, its ints and the object headers; measured by
``benchmarks/memory_parts.py``: a ``ticker`` frame of 466 B held 668 B), given back when it
is handled. A reader waits while the budget is spent and its own socket holds a frame read
ahead, so the sum is at most the limit plus one frame a socket, and a socket whose handling
keeps up is not held back by another's backlog (docs/scaling.md, *The memory budget*)."""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["FRAME_OVERHEAD", "ReadAheadBudget"]

FRAME_OVERHEAD = 208  # bytes a frame read ahead holds beside its text (668 - 466, rounded up)


class ReadAheadBudget:
    """``limit`` bytes (> 0) shared by the read-ahead of every whole-exchange socket of one
    gatherer. ``held``: bytes of frames read and not yet handled; ``peak``: the most held."""

    __slots__ = ("_room", "held", "limit", "peak")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"a read-ahead budget needs a limit > 0 bytes, got {limit}")
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._room = trio.lowlevel.ParkingLot()

    @staticmethod
    def cost(raw: bytes | str) -> int:
        """What holding the frame ``raw`` counts against the limit (bytes)."""
        return len(raw) + FRAME_OVERHEAD

    @property
    def full(self) -> bool:
        return self.held >= self.limit

    def take(self, cost: int) -> None:
        """A frame of ``cost`` was read ahead (taken even past the limit: the reader then
        waits in :meth:`room`)."""
        self.held += cost
        if self.held > self.peak:
            self.peak = self.held

    def give(self, cost: int) -> None:
        """A frame of ``cost`` was handled (or dropped with its session): the waiting
        readers look again (:meth:`room`)."""
        self.held -= cost
        if self._room:
            self._room.unpark_all()

    async def room(self, holding: Callable[[], bool]) -> None:
        """Until the budget is not spent, or the waiting reader's own socket holds nothing
        read ahead (``holding()`` false): a socket whose handling keeps up reads on, a
        frame at a time, while another's backlog holds the budget (so ``held`` is at most
        the limit plus one frame a socket). Returns at once when neither waits."""
        while self.held >= self.limit and holding():
            await self._room.park()
