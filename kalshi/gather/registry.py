"""The market registry, where the gatherer imports it from: it lives in
:mod:`kalshi.pipeline.registry`, shared with ``kalshi replay`` (which keeps one per
gatherer from the journaled market listing)."""

from kalshi.pipeline.registry import (
    LIVE_STATUSES,
    MARKET_STATUSES,
    MarketRegistry,
    Shard,
    parse_shard,
)

__all__ = ["LIVE_STATUSES", "MARKET_STATUSES", "MarketRegistry", "Shard", "parse_shard"]
