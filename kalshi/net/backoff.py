"""Exponential backoff with full jitter, for reconnects and REST retries."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays ``initial * 2**n`` capped at ``maximum``, each drawn uniformly from
    ``[cap/2, cap]`` (jitter that never collapses to zero). ``reset()`` after a success."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.attempts = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The cap of the next delay (before jitter)."""
        return min(self.maximum, self.initial * 2.0 ** min(self.attempts, 60))

    def next(self) -> float:
        cap = self.ceiling()
        self.attempts += 1
        return cap / 2 + self._rng.random() * cap / 2

    def reset(self) -> None:
        self.attempts = 0
