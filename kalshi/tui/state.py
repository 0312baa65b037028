"""What the live screen knows: the latest health document and rates derived from successive
ones. Pure: the caller says when each document was taken (``now``, seconds on any clock)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from attrs import define, field
from prometheus_client.parser import text_string_to_metric_families

from kalshi.tui import _doc

__all__ = ["MetricTotal", "Rates", "TuiState", "parse_metrics"]

_SKIP_FAMILIES = ("process_", "python_")


@define
class MetricTotal:
    """One metric family summed over its labels (counters: the ``_total`` samples)."""

    kind: str
    value: float


def parse_metrics(text: str) -> dict[str, MetricTotal]:
    """Prometheus text -> {family: total} for counters and gauges.

    ``process_*``, ``python_*`` and ``*_created`` families are skipped.

    Raises ``ValueError`` on text that is not the Prometheus exposition format.
    """
    totals: dict[str, MetricTotal] = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "gauge") or family.name.startswith(_SKIP_FAMILIES):
            continue
        if family.name.endswith("_created"):  # counters' creation stamps, not data
            continue
        wanted = family.name + "_total" if family.type == "counter" else family.name
        value = sum(s.value for s in family.samples if s.name == wanted)
        totals[family.name] = MetricTotal(family.type, float(value))
    return totals


class Rates:
    """Per-name rates of monotonically growing counts (of ``key``), with a bounded history."""

    def __init__(self, key: str, history: int) -> None:
        self.key = key
        self._history = history
        self.counts: dict[str, float] = {}
        self.current: dict[str, float | None] = {}
        self.series: dict[str, deque[float]] = {}

    def observe(self, counts: Mapping[str, float], elapsed: float | None) -> None:
        for key, count in counts.items():
            before = self.counts.get(key)
            rate: float | None = None
            # A count that went down means the service restarted: no rate for this step.
            if elapsed is not None and elapsed > 0 and before is not None and count >= before:
                rate = (count - before) / elapsed
            self.current[key] = rate
            if rate is not None:
                self.series.setdefault(key, deque(maxlen=self._history)).append(rate)
            self.counts[key] = count

    def total(self, keys: list[str]) -> float | None:
        rates = [self.current.get(key) for key in keys]
        known = [rate for rate in rates if rate is not None]
        return sum(known) if known and len(known) == len(rates) else None


@define
class TuiState:
    """Accumulates health documents (and optionally ``/metrics`` text) into screen state.

    ``observe`` the documents in order with the time each was taken; ``render`` draws it.
    Rates are ``(count - previous count) / (now - previous now)`` per channel
    (``messages``), per table (``rows_written``), per connection (``messages``) and per
    counter family of ``/metrics``; the last ``history`` rates feed the sparklines.
    """

    history: int = 30
    health: dict[str, Any] = field(factory=dict)
    metrics: dict[str, MetricTotal] = field(factory=dict)
    samples: int = 0
    at: float | None = None
    error: str | None = None
    channels: Rates = field(init=False)
    tables: Rates = field(init=False)
    connections: Rates = field(init=False)
    counters: Rates = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.channels = Rates("messages", self.history)
        self.tables = Rates("rows_written", self.history)
        self.connections = Rates("messages", self.history)
        self.counters = Rates("value", self.history)

    def observe(self, health: Mapping[str, Any], *, now: float, metrics: str | None = None) -> None:
        """Add the document taken at ``now`` (and the ``/metrics`` text taken with it).

        Raises ``ValueError`` (and changes nothing) when ``metrics`` is not Prometheus text.
        """
        parsed = parse_metrics(metrics) if metrics is not None else None
        elapsed = None if self.at is None else now - self.at
        self.health = dict(health)
        self.channels.observe(_counts(health.get("channels"), self.channels.key), elapsed)
        self.tables.observe(_counts(health.get("tables"), self.tables.key), elapsed)
        self.connections.observe(_connection_counts(health.get("connections")), elapsed)
        if parsed is not None:
            self.metrics = parsed
            counters = {k: v.value for k, v in self.metrics.items() if v.kind == "counter"}
            self.counters.observe(counters, elapsed)
        self.samples += 1
        self.at = now
        self.error = None

    def observe_error(self, message: str) -> None:
        """The source failed: keep the last document, show ``message`` until the next one."""
        self.error = message


def _counts(section: object, key: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    if isinstance(section, Mapping):
        for name, entry in section.items():
            count = _doc.number(entry.get(key)) if isinstance(entry, Mapping) else None
            if count is not None:
                counts[str(name)] = count
    return counts


def _connection_counts(connections: object) -> dict[str, float]:
    counts: dict[str, float] = {}
    for entry in _doc.records(connections):
        count = _doc.number(entry.get("messages"))
        if count is not None:
            counts[str(entry.get("name"))] = count
    return counts
