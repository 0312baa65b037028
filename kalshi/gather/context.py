"""What every task of one gatherer shares: config, clocks, the frame processor, the journal,
the writers' channels, and the counters the health document is made of."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio
from attrs import define, field

from kalshi.auth import Signer
from kalshi.config import GathererConfig
from kalshi.gather import metrics
from kalshi.gather.skew import ClockSkew
from kalshi.journal import JournalWriter
from kalshi.models.rows import GapRow, Row
from kalshi.net import Connector, WallClock, mono_us
from kalshi.pipeline import FrameProcessor, Outcome, RowChannel, RowSink

__all__ = [
    "BACKFILL_MARGIN_US",
    "RESTART_MARGIN_US",
    "Backfill",
    "GatherContext",
    "RowChannel",
    "RowSink",
]

Backfill = tuple[int, int, object]
"""A trade backfill window ``(from_us, to_us, hold key)``."""

BACKFILL_MARGIN_US = 2_000_000
"""REST trade times are whole seconds and the window is widened by one: rows this much older
than the window's start may come."""

RESTART_MARGIN_US = 60_000_000
"""After a restart, trades are fetched from this long before the previous run's last stored
receipt: trades made earlier but received after it (frames arrive seconds late) were lost
with the process too."""

log = logging.getLogger("kalshi.gather")


@define
class GatherContext:
    cfg: GathererConfig
    signer: Signer
    connector: Connector
    processor: FrameProcessor
    journal: JournalWriter | None
    sink: RowSink
    wall_us: WallClock
    mono_us: Callable[[], int] = mono_us
    backfill: trio.MemorySendChannel[Backfill] | None = None
    # Keep the store's ingest watermark at or before a time while a backfill is due.
    hold: Callable[[object, int], None] = lambda key, since_us: None
    release: Callable[[object], None] = lambda key: None
    on_lifecycle: Callable[[Outcome], Awaitable[None]] | None = None
    on_connection_lost: Callable[[], None] | None = None
    gaps: Counter[str] = field(factory=Counter)
    # Why the last market listing failed; None once one succeeds (``/health``: nothing
    # tracked because listing fails is degraded, not ok).
    listing_error: str | None = None
    resnapshots: int = 0
    skew: ClockSkew = field(factory=ClockSkew)  # this machine's clock against the exchange's
    _last_conn_id: int = 0

    def new_conn_id(self) -> int:
        """A connection-session id: µs wall clock, strictly increasing in this process."""
        self._last_conn_id = max(self._last_conn_id + 1, self.wall_us())
        return self._last_conn_id

    @property
    def gatherer_id(self) -> str:
        return self.cfg.gatherer_id

    def count_gaps(self, rows: list[tuple[str, Row]]) -> None:
        """Count the ``gaps`` rows among ``rows`` (health and metrics, by kind)."""
        for _, row in rows:
            if isinstance(row, GapRow):
                self.gaps[row.kind] += 1
                metrics.GAPS.labels(row.kind).inc()

    async def gap(self, row: GapRow) -> None:
        """Store a gap row made outside the pipeline, journaled first as a ``gap`` marker
        holding the row (``kalshi replay`` writes it again)."""
        self.marker(row.conn_id, "gap", row=list(row))
        self.count_gaps([("gaps", row)])
        await self.sink.put("gaps", row)

    def marker(self, conn_id: int, kind: str, **detail: object) -> None:
        if self.journal is not None:
            self.journal.record_marker(conn_id, kind, self.wall_us(), self.mono_us(), **detail)
