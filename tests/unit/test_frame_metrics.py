"""Per-frame metrics counted in plain integers and published in batches: the totals
Prometheus shows after a flush are exactly what per-frame inc/observe calls would show."""

from __future__ import annotations

from prometheus_client import REGISTRY

from kalshi.gather.frame_metrics import FLUSH_SECONDS, FrameMetrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_flush_publishes_exact_totals_and_nothing_before() -> None:
    channel = "test_frame_metrics"
    before = {
        "delta": sample("kalshi_ws_messages_total", channel=channel, type="orderbook_delta"),
        "bytes": sample("kalshi_ws_bytes_total", channel=channel),
        "le_0.001": sample("kalshi_latency_seconds_bucket", le="0.001"),
        "le_0.0025": sample("kalshi_latency_seconds_bucket", le="0.0025"),
        "le_inf": sample("kalshi_latency_seconds_bucket", le="+Inf"),
        "count": sample("kalshi_latency_seconds_count"),
        "sum": sample("kalshi_latency_seconds_sum"),
    }
    counts = FrameMetrics(channel)
    for _ in range(3):
        counts.frame("orderbook_delta", 200)
    counts.frame("invalid", 7)
    for seconds in (0.0, 0.001, 0.002, 60.0):  # bounds are inclusive, as observe's are
        counts.latency(seconds)
    assert sample("kalshi_ws_bytes_total", channel=channel) == before["bytes"]
    counts.flush(10.0)
    assert counts.due == 10.0 + FLUSH_SECONDS
    assert sample("kalshi_ws_messages_total", channel=channel, type="orderbook_delta") == (
        before["delta"] + 3
    )
    assert sample("kalshi_ws_messages_total", channel=channel, type="invalid") == 1
    assert sample("kalshi_ws_bytes_total", channel=channel) == before["bytes"] + 607
    assert sample("kalshi_latency_seconds_bucket", le="0.001") == before["le_0.001"] + 2
    assert sample("kalshi_latency_seconds_bucket", le="0.0025") == before["le_0.0025"] + 3
    assert sample("kalshi_latency_seconds_bucket", le="+Inf") == before["le_inf"] + 4
    assert sample("kalshi_latency_seconds_count") == before["count"] + 4
    assert abs(sample("kalshi_latency_seconds_sum") - (before["sum"] + 60.003)) < 1e-9
    counts.flush(11.0)  # nothing pending: nothing added
    assert sample("kalshi_ws_bytes_total", channel=channel) == before["bytes"] + 607
    assert sample("kalshi_latency_seconds_count") == before["count"] + 4
