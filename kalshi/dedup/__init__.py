"""The deduplicator: merge the databases of redundant gatherers into production, export.

* :func:`merge_market` -- pure: extend one market's merged order-book stream.
"""

from kalshi.dedup.merge import Checkpoint, MarketMerge, merge_market

__all__ = ["Checkpoint", "MarketMerge", "merge_market"]
