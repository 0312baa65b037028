"""Each process's own metrics: views of the one prometheus registry.

Every ``kalshi`` module registers its metrics in ``prometheus_client.REGISTRY`` on import,
and one ``kalshi`` process imports the modules of every command; a gatherer's ``/metrics``
would show the deduplicator's series (``kalshi_dedup_gatherer_up 0``) and the other way
round. These views keep a process's own families (and the client's ``process_``/
``python_`` ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["dedup_metrics", "gatherer_metrics"]

_DEDUP = ("kalshi_dedup_", "kalshi_export_")


class _Only(Collector):
    def __init__(self, registry: CollectorRegistry, keep: Callable[[str], bool]) -> None:
        self._registry = registry
        self._keep = keep

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if not family.name.startswith("kalshi_") or self._keep(family.name):
                yield family


def _view(registry: CollectorRegistry, keep: Callable[[str], bool]) -> CollectorRegistry:
    view = CollectorRegistry(auto_describe=False)
    view.register(_Only(registry, keep))
    return view


def gatherer_metrics(registry: CollectorRegistry = REGISTRY) -> CollectorRegistry:
    """``registry`` without the deduplicator's and exporter's families."""
    return _view(registry, lambda name: not name.startswith(_DEDUP))


def dedup_metrics(registry: CollectorRegistry = REGISTRY) -> CollectorRegistry:
    """Only the deduplicator's and exporter's ``kalshi_`` families of ``registry``."""
    return _view(registry, lambda name: name.startswith(_DEDUP))
