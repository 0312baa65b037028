"""The one retry policy: exponential backoff with jitter, over named transient errors.

Every caller that tries again (WebSocket reconnects, REST requests, the batch writers while
the database is down, S3 uploads of journal files and exports) draws its delays from
:class:`Backoff`; callers that retry one call a bounded number of times use :func:`retry`.
Sleeps are ``trio.sleep``, so tests on ``autojump_clock`` run them in virtual time.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

__all__ = ["Backoff", "retry"]

T = TypeVar("T")


class Backoff:
    """Delays ``initial * 2**n`` capped at ``maximum``, each drawn uniformly from
    ``[cap/2, cap]`` (jitter that never collapses to zero). ``reset()`` after a success.

    Raises :class:`ValueError` unless ``0 < initial <= maximum``.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.attempts = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The cap of the next delay (before jitter), seconds."""
        return min(self.maximum, self.initial * 2.0 ** min(self.attempts, 60))

    def next(self) -> float:
        """The next delay, seconds; each call doubles the ceiling up to ``maximum``."""
        cap = self.ceiling()
        self.attempts += 1
        return cap / 2 + self._rng.random() * cap / 2

    def reset(self) -> None:
        self.attempts = 0


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    transient: tuple[type[BaseException], ...],
    attempts: int,
    initial: float = 0.5,
    maximum: float = 30.0,
    on_failure: Callable[[BaseException, int], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``call()`` until it returns, at most ``attempts`` times in all.

    An exception of a ``transient`` type is handed to ``on_failure(exc, attempt)`` (count
    it, log it) and, unless it was the last attempt, followed by a :class:`Backoff` delay
    (``initial``/``maximum`` seconds, jitter drawn from ``rng``); the last attempt's
    exception is raised. Any other
    exception (and cancellation) propagates at once. Raises :class:`ValueError` if
    ``attempts < 1``.
    """
    if attempts < 1:
        raise ValueError(f"retry needs attempts >= 1, got {attempts}")
    backoff = Backoff(initial, maximum, rng)
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except transient as exc:
            if on_failure is not None:
                on_failure(exc, attempt)
            if attempt == attempts:
                raise
        await trio.sleep(backoff.next())
    raise AssertionError("unreachable")
