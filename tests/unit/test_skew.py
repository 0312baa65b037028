"""The clock-offset estimate from receive and exchange times (issue 18 item 6)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from kalshi.gather.skew import ClockSkew

T0 = 1_795_608_000_000_000


def test_the_minimum_per_window_is_the_offset_and_a_clock_behind_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    skew = ClockSkew(window_us=10_000_000, warn_s=1.0)
    # our clock 90 s behind the exchange's, latency 20..80 ms
    for i in range(100):
        exchange = T0 + i * 100_000
        skew.observe(exchange - 90_000_000 + 20_000 + (i % 7) * 10_000, exchange)
    assert skew.offset_s is None  # the first window is still open
    with caplog.at_level(logging.WARNING, logger="kalshi.gather"):
        skew.observe(T0 + 10_000_000 - 90_000_000 + 50_000, T0 + 10_000_000)
    assert skew.offset_us == -89_980_000
    assert REGISTRY.get_sample_value("kalshi_clock_offset_seconds") == -89.98
    assert [r.getMessage() for r in caplog.records] == [
        "the local clock is at least 89.980 s behind the exchange's (minimum of receive minus"
        " exchange time over 10 s): correct the system clock (NTP)"
    ]


def test_a_right_clock_is_its_latency_and_stays_quiet(caplog: pytest.LogCaptureFixture) -> None:
    skew = ClockSkew(window_us=10_000_000)
    with caplog.at_level(logging.WARNING, logger="kalshi.gather"):
        for i in range(300):
            exchange = T0 + i * 100_000
            skew.observe(exchange + 35_000 + (i % 5) * 1_000, exchange)
    assert skew.offset_us == 35_000
    assert caplog.records == []
