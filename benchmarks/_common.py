"""Helpers shared by the benchmark scripts: timing loops and a machine line."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["machine", "peak_rss_mib", "rate"]


def machine() -> str:
    """One line describing where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{datetime.now(UTC):%Y-%m-%d} · {os.cpu_count()} cores ({cpu}) · {mem_gib:.0f} GiB · "
        f"Python {platform.python_version()}"
    )


def rate(fn: Callable[[], int], *, min_seconds: float = 1.0) -> float:
    """Items per second of ``fn`` (which returns how many items it processed), best of 3."""
    best = 0.0
    for _ in range(3):
        items = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds:
            items += fn()
        best = max(best, items / elapsed)
    return best


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
