"""Where a gatherer's previous run stopped: its last receipt per table, from its database.

A gatherer that starts again (after ``kill -9``, a crash, or a clean stop) was down from
there until its new connections are subscribed: its trades in that window are fetched over
REST and the window is recorded as an ``outage`` gap per channel (``kalshi.gather``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from attrs import define, field

from kalshi.models.rows import GapRow, Row
from kalshi.store.connection import connect, session_options, translating

__all__ = ["LastRun", "Tail", "TailReader", "acknowledged", "last_run", "open_gaps", "still_open"]

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


_OPEN_KINDS = ("subscription_refused", "backfill", "book_invalid", "stopped")


def open_gaps(
    url: str,
    gatherer_id: str,
    *,
    statement_timeout: float = 0.0,
    lock_timeout: float = 0.0,
) -> list[GapRow]:
    """The gaps earlier runs of ``gatherer_id`` left open that a start acts on, oldest
    first: ``backfill`` (trades still due over REST: fetched again), and
    ``subscription_refused``, ``book_invalid`` and ``stopped`` (what a run killed, or a
    REST-polled crossed book, left open: ended where that run stopped; this run
    subscribes and snapshots afresh). Blocking; raises like :func:`last_run`."""
    options = session_options(statement_timeout, lock_timeout)
    columns = ", ".join(GapRow._fields)
    with translating(), connect(url, autocommit=True, **options) as conn:
        rows = conn.execute(
            f"SELECT {columns} FROM gaps WHERE gatherer_id = %(g)s"
            " AND kind = ANY(%(kinds)s) AND end_ts IS NULL ORDER BY start_ts",
            {"g": gatherer_id, "kinds": list(_OPEN_KINDS)},
        ).fetchall()
    return [GapRow._make(row) for row in rows]  # selected in GapRow._fields order


def still_open(stored: list[GapRow], tail: list[tuple[str, Row]]) -> list[GapRow]:
    """``stored`` open gaps with those of a journal ``tail`` (its rows not committed yet):
    a tail's open gap of the kinds :func:`open_gaps` reads is added, a tail's closed copy
    removes it; oldest first."""

    def ident(row: GapRow) -> tuple[object, ...]:
        return (row.start_ts, row.conn_id, row.sid, row.kind, row.ticker)

    out = {ident(row): row for row in stored}
    for table, row in tail:
        if table == "gaps" and isinstance(row, GapRow) and row.kind in _OPEN_KINDS:
            if row.end_ts is None:
                out.setdefault(ident(row), row)
            else:
                out.pop(ident(row), None)
    return sorted(out.values(), key=lambda row: row.start_ts)


# Per connection and table, the newest frame whose row the database holds. Rows of a
# frame received at or after the watermark have an exchange time no earlier than the
# watermark less the latency bound (kalshi-api.md §2.4: frames carry the exchange's time),
# which keeps the scan to the newest chunks; lifecycle rows carry older event times.
_ACKED = {
    "trades": "source = 'ws' AND exchange_ts >= %(since)s",
    "orderbook_deltas": "exchange_ts >= %(since)s",
    "tickers": "exchange_ts >= %(since)s",
    "market_lifecycle": "TRUE",
}


def acknowledged(
    url: str,
    gatherer_id: str,
    conn_ids: list[int],
    *,
    complete_before: int | None,
    statement_timeout: float = 0.0,
    lock_timeout: float = 0.0,
) -> dict[tuple[int, str], int]:
    """``{(conn_id, table): frame_no}``: the newest frame of each of ``conn_ids`` whose row
    in ``table`` (trades, orderbook_deltas, tickers, market_lifecycle) the database
    acknowledged; absent when it holds none. ``complete_before`` (µs, the gatherer's
    watermark; ``None``: unknown) bounds the scan. Blocking; raises like :func:`last_run`."""
    if not conn_ids:
        return {}
    since = -(2**62) if complete_before is None else complete_before - _LATENCY_US
    params = {"g": gatherer_id, "conns": conn_ids, "since": since}
    options = session_options(statement_timeout, lock_timeout)
    out: dict[tuple[int, str], int] = {}
    with translating(), connect(url, autocommit=True, **options) as conn:
        for table, bound in _ACKED.items():
            rows = conn.execute(
                f"SELECT conn_id, max(frame_no) FROM {table} WHERE gatherer_id = %(g)s"
                f" AND conn_id = ANY(%(conns)s) AND {bound} GROUP BY conn_id",
                params,
            ).fetchall()
            for conn_id, frame_no in rows:
                out[(int(conn_id), table)] = int(frame_no)
    return out


@define
class Tail:
    """A previous run's journal tail (``kalshi.replay.tail``): the rows to write again, in
    journal order, and per ``LastRun`` field (``trades``, ``orderbook``, ``tickers``,
    ``lifecycle``) the receive time (µs) of the last journaled frame that made such rows:
    where the journal ends. ``end``: the receive time of its last frame of any kind (every
    frame received before it is on disk: one writer, in order of receipt); ``None`` when it
    has none at or after the watermark."""

    rows: list[tuple[str, Row]] = field(factory=list)
    ends: dict[str, int] = field(factory=dict)
    end: int | None = None
    frames: int = 0  # frames after the acknowledged ones
    problems: int = 0  # damaged lines (a torn last line after kill -9 is expected)


TailReader = Callable[
    [Path, str, "int | None", Callable[[list[int]], dict[tuple[int, str], int]], "int | None"],
    Tail,
]
"""``(journal dir, gatherer_id, complete_before, acked, until) -> Tail`` (blocking): how a
gatherer reads its journal's tail at start (``kalshi.replay.tail.journal_tail``, given by
the CLI: gathering and replay share the pipeline, not each other)."""
