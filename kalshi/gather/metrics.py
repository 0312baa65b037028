"""The gatherer's Prometheus metrics (names are a public contract: dashboards use them)."""

from __future__ import annotations

import collections
import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from kalshi.models.rows import GAP_KINDS
from kalshi.pipeline.registry import MARKET_STATUSES

MESSAGES = Counter(
    "kalshi_ws_messages",
    "WebSocket frames received, by channel and message type",
    ["channel", "type"],
)
BYTES = Counter("kalshi_ws_bytes", "WebSocket bytes received, by channel", ["channel"])
RECONNECTS = Counter(
    "kalshi_ws_reconnects", "WebSocket sessions that ended and were replaced", ["connection"]
)
CONNECTIONS = Gauge("kalshi_ws_connections", "WebSocket connections by state", ["state"])
GAPS = Counter("kalshi_gaps", "Detected data gaps, by kind", ["kind"])
RESNAPSHOTS = Counter("kalshi_resnapshots", "Order-book snapshots requested again", ["reason"])
DECODE_ERRORS = Counter("kalshi_decode_errors", "Frames that could not be used, by kind", ["kind"])
LATENCY = Histogram(
    "kalshi_latency_seconds",
    "Exchange timestamp to row handed to its writer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CLOCK_OFFSET = Gauge(
    "kalshi_clock_offset_seconds",
    "Minimum of receive minus exchange time over the last minute: local clock offset plus"
    " the least latency (negative: the local clock is behind)",
)
MARKETS = Gauge("kalshi_markets_tracked", "Markets in the registry, by status", ["status"])
TAIL_ROWS = Counter(
    "kalshi_journal_tail_rows",
    "Rows of the previous run's journal tail written again at start, by table",
    ["table"],
)
REST_REQUESTS = Counter(
    "kalshi_rest_requests", "REST requests by endpoint and HTTP status", ["endpoint", "status"]
)
SNAPSHOT_PASS = Gauge(
    "kalshi_snapshot_pass_seconds",
    "How long the last full pass of the REST snapshot poller took (seconds)",
)
SNAPSHOT_MISMATCHES = Counter(
    "kalshi_snapshot_mismatches",
    "REST order books the live book never matched from the request's send to the next pass",
)
SNAPSHOT_IN_FLIGHT = Counter(
    "kalshi_snapshot_in_flight",
    "REST order books that differed from the live book at their reply, explained by deltas"
    " in flight (the live book was in their state before or after)",
)
CROSSED_BOOK_FRAMES = Counter(
    "kalshi_crossed_book_frames",
    "Order-book frames after which a market's book was crossed (YES bid >= YES ask)",
)
COMMAND_REPLIES = Counter(
    "kalshi_ws_command_replies",
    "Replies to our WebSocket commands, by action and outcome (ok, an error code, timeout)",
    ["action", "outcome"],
)
PAGINATION_ERRORS = Counter(
    "kalshi_pagination_errors",
    "Paginated REST calls stopped on a repeated cursor or the page cap, by endpoint",
    ["endpoint"],
)
BACKFILLED_TRADES = Counter(
    "kalshi_backfilled_trades", "Trades fetched over REST to cover a disconnect or seq gap"
)


for _kind in GAP_KINDS:  # each series exists at 0 before its first gap
    GAPS.labels(_kind)


def count_rest(endpoint: str, status: int) -> None:
    REST_REQUESTS.labels(endpoint, str(status)).inc()


def count_tail(rows: list[tuple[str, Any]]) -> None:
    for table, _ in rows:
        TAIL_ROWS.labels(table).inc()


def follow_registry(counts: collections.Counter[str]) -> None:
    """``kalshi_markets_tracked`` read from ``counts`` (the registry's markets by status,
    kept as it changes) at each scrape: every status of the API, 0 when none, and any
    other status once the registry has held it."""
    for status in (*MARKET_STATUSES, *counts):
        MARKETS.labels(status).set_function(functools.partial(counts.__getitem__, status))
