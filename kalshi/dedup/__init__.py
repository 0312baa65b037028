"""The deduplicator: merge the databases of redundant gatherers into production, export.

* :class:`Deduplicator` -- one merge pass at a time (:meth:`~Deduplicator.run_pass`).
* :func:`serve_dedup` -- the service: passes every ``sync.poll_interval``, export alongside,
  ``/health`` and ``/metrics``.
* :class:`Exporter` -- closed windows of production as Parquet to S3 or a directory.
* :func:`merge_market` -- pure: extend one market's merged order-book stream.
* :func:`production_books` -- every market's book as production holds it.

See ``docs/dedup.md``.
"""

from kalshi.dedup.books import production_books
from kalshi.dedup.export import Exporter, WindowExport
from kalshi.dedup.merge import Checkpoint, MarketMerge, merge_market
from kalshi.dedup.service import Deduplicator, PassReport, serve_dedup
from kalshi.dedup.targets import LocalTarget, S3Target, Target, open_target

__all__ = [
    "Checkpoint",
    "Deduplicator",
    "Exporter",
    "LocalTarget",
    "MarketMerge",
    "PassReport",
    "S3Target",
    "Target",
    "WindowExport",
    "merge_market",
    "open_target",
    "production_books",
    "serve_dedup",
]
