"""Per-market problems of the gatherer's steady paths, logged as one line for many markets.

A problem that can strike every market at once (a REST poll of 250 000 books, a burst of
invalid deltas after a loss) logged one WARNING line per market is 250 000 lines; each is
counted and recorded anyway (metrics, ``gaps`` rows). So such a path logs one line a pass
or a period: how many, in how many markets, the first :data:`TICKERS_NAMED` tickers, and
where the rest is; each market's own line goes to DEBUG (the deduplicator's holes do the
same, ``kalshi.dedup.service``)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

__all__ = ["PROBLEMS_LOG_SECONDS", "TICKERS_NAMED", "BookProblems", "named"]

TICKERS_NAMED = 5  # tickers a summary line names; the rest are counted
PROBLEMS_LOG_SECONDS = 10.0  # a connection's book problems: one line at most this often

log = logging.getLogger("kalshi.gather.connection")


def named(tickers: Sequence[str]) -> str:
    """``"A, B, C, D, E and 7 more"``: the first :data:`TICKERS_NAMED` distinct tickers in
    sorted order, and how many more."""
    distinct = sorted(set(tickers))
    more = len(distinct) - TICKERS_NAMED
    return ", ".join(distinct[:TICKERS_NAMED]) + (f" and {more} more" if more > 0 else "")


class BookProblems:
    """One connection's book problems (``Outcome.problem``: ``book``, ``book_invalid``,
    ``crossed``) since its last summary: :meth:`note` logs each at DEBUG, :meth:`flush`
    logs them as one WARNING line, at most every :data:`PROBLEMS_LOG_SECONDS` (Trio time)
    and when the session ends."""

    __slots__ = ("_kinds", "_name", "_tickers", "due")

    def __init__(self, name: str) -> None:
        self._name = name
        self._kinds: Counter[str] = Counter()
        self._tickers: set[str] = set()
        self.due = 0.0  # Trio time the next summary may be logged at

    def note(self, kind: str, ticker: str, detail: str) -> None:
        log.debug("%s: %s", self._name, detail)
        self._kinds[kind] += 1
        self._tickers.add(ticker)

    def flush(self, now: float, *, force: bool = False) -> None:
        """Log what was noted, as one line, if ``now`` is past :attr:`due` (or ``force``)."""
        if not self._kinds or (now < self.due and not force):
            return
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self._kinds.items()))
        markets = len(self._tickers)
        log.warning(
            "%s: %d book problem(s) in %d market(s) (%s): %s; each counted, a book_invalid "
            "gap row or a resnapshot as its kind asks; details at DEBUG",
            self._name,
            sum(self._kinds.values()),
            markets,
            named(sorted(self._tickers)),
            kinds,
        )
        self._kinds.clear()
        self._tickers.clear()
        self.due = now + PROBLEMS_LOG_SECONDS
