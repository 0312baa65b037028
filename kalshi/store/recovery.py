"""Where a gatherer's previous run stopped: its last receipt per table, from its database.

A gatherer that starts again (after ``kill -9``, a crash, or a clean stop) was down from
there until its new connections are subscribed: its trades in that window are fetched over
REST and the window is recorded as an ``outage`` gap per channel (``kalshi.gather``).
"""

from __future__ import annotations

from typing import NamedTuple

from kalshi.store.connection import connect, session_options, translating

__all__ = ["LastRun", "last_run"]

_LATENCY_US = 60_000_000  # deltas are received within this of their exchange time

_SQL = """
SELECT
  (SELECT max(received_at) FROM trades WHERE gatherer_id = %(g)s AND source = 'ws'),
  greatest(
    (SELECT max(snapshot_ts) FROM orderbook_snapshots
      WHERE gatherer_id = %(g)s AND source = 'ws'),
    (SELECT max(received_at) FROM orderbook_deltas WHERE gatherer_id = %(g)s
      AND exchange_ts >= (SELECT max(exchange_ts) FROM orderbook_deltas
                          WHERE gatherer_id = %(g)s) - %(latency)s)),
  (SELECT max(received_at) FROM tickers WHERE gatherer_id = %(g)s),
  (SELECT max(received_at) FROM market_lifecycle WHERE gatherer_id = %(g)s),
  (SELECT complete_before FROM ingest_watermark
    WHERE gatherer_id = %(g)s AND updated_at < %(before)s)
"""


class LastRun(NamedTuple):
    """Times in µs, ``None`` where the previous run left nothing. ``complete_before``: its
    last ingest watermark (every row it received before that is in the database)."""

    trades: int | None
    orderbook: int | None
    tickers: int | None
    lifecycle: int | None
    complete_before: int | None

    @property
    def ran(self) -> bool:
        return any(value is not None for value in self)

    def outage_start(self, last: int | None) -> int | None:
        """When a channel whose newest stored receipt is ``last`` stopped being complete:
        the earlier of ``last`` and the watermark (rows received just before the stop may
        not have been written); ``None`` when there was no previous run."""
        known = [v for v in (last, self.complete_before) if v is not None]
        if not known:
            latest = [v for v in self[:4] if v is not None]
            return max(latest) if latest else None
        return min(known)


def last_run(
    url: str,
    gatherer_id: str,
    *,
    statement_timeout: float = 0.0,
    lock_timeout: float = 0.0,
    opened_at: int | None = None,
) -> LastRun:
    """Read :class:`LastRun` of ``gatherer_id`` (blocking). Raises ``StoreError`` /
    ``DatabaseUnavailable`` (also when the read outlasts ``statement_timeout`` or waits
    longer than ``lock_timeout`` for a locked table, seconds; 0 = no bound). A watermark
    recorded at or after ``opened_at`` (µs: when this run's store opened and recorded its
    first) is this run's, not the previous one's."""
    options = session_options(statement_timeout, lock_timeout)
    before = 2**62 if opened_at is None else opened_at
    params = {"g": gatherer_id, "latency": _LATENCY_US, "before": before}
    with translating(), connect(url, autocommit=True, **options) as conn:
        row = conn.execute(_SQL, params).fetchone()
    assert row is not None
    return LastRun(*(None if v is None else int(v) for v in row))
