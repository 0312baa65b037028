"""The one retry policy: exponential backoff with jitter, over named transient errors.

Every caller that tries again (WebSocket reconnects, REST requests, the batch writers while
the database is down, S3 uploads of journal files and exports) draws its delays from
:class:`Backoff`. Callers that retry one call until it succeeds (a bounded number of
times, or without bound: the market listing, a trade backfill) use :func:`retry`, which
runs on `stamina <https://stamina.hynek.me>`_ (the attempts, the classification of
errors, Trio's sleep) with :class:`Backoff`'s delays. The loops that keep a
:class:`Backoff` of their own are not "one call until it succeeds", which is all stamina
expresses: a connection's schedule resets once it is subscribed, in the middle of what
would be stamina's attempt; a writer's failure is a result (the batch kept), not an
exception; the journal queues a failed upload with a delay and goes on instead of
sleeping; its disk loop writes a different, larger buffer at each tick. See
``docs/architecture.md`` "Retries". Sleeps are ``trio.sleep``, so tests on
``autojump_clock`` run them in virtual time.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina
import stamina.instrumentation

__all__ = ["Backoff", "Transient", "retry"]

T = TypeVar("T")

Transient = tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""What :func:`retry` tries again: exception types, or a predicate on the exception (an
HTTP error of one status and not of another)."""

# Callers count and log every failure themselves (``on_failure``, with their own metric
# names); stamina's default hooks would log each retry again and register a
# ``stamina_retries_total`` family in Prometheus' default registry, which every process's
# /metrics would then carry undocumented.
stamina.instrumentation.set_on_retry_hooks([])


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
    transient: Transient,
    attempts: int | None,
    initial: float = 0.5,
    maximum: float = 30.0,
    on_failure: Callable[[BaseException, int], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``call()`` until it returns, at most ``attempts`` times in all (``None``: until
    it returns or raises what is not transient).

    An exception that is ``transient`` (one of its types, or for which its predicate is
    true) is handed to ``on_failure(exc, attempt)`` (count it, log it) and, unless it was
    the last attempt, followed by a :class:`Backoff` delay (``initial``/``maximum``
    seconds, jitter drawn from ``rng``); the last attempt's exception is raised. Any other
    exception (and cancellation) propagates at once. No overall time limit: the attempts
    bound it. Raises :class:`ValueError` if ``attempts < 1``.
    """
    if attempts is not None and attempts < 1:
        raise ValueError(f"retry needs attempts >= 1, got {attempts}")
    backoff = Backoff(initial, maximum, rng)
    is_transient = (
        transient if not isinstance(transient, tuple) else lambda exc: isinstance(exc, transient)
    )
    failures = 0

    def delay(exc: BaseException) -> bool | float:
        """stamina's hook: ``False`` raises ``exc`` now; a float is the next delay."""
        nonlocal failures
        if not is_transient(exc):
            return False
        failures += 1
        if on_failure is not None:
            on_failure(exc, failures)
        return backoff.next() if attempts is None or failures < attempts else True

    caller = stamina.AsyncRetryingCaller(attempts=attempts, timeout=None)
    return await caller(delay, call)
