"""Where no gatherer covered a channel (pure): the holes of the whole-exchange channels.

A gatherer writes a connection-wide ``gaps`` row (``ticker`` NULL) for every stretch one of
its connections did not cover: ``outage`` (the gatherer itself was down), ``reconnect``
(a session lost) and ``stopped``; its ``detail`` starts with the connection's label
(``trade-0``, ``ticker-0``, ``lifecycle-0``, ``combo-lifecycle-0``, ``orderbook-0``:
``kalshi/gather/connection.py``). A stretch of a channel is a hole in production only
where *every* gatherer had such a stretch (one gatherer covered it: not a hole), so the
holes are the intersection, over the gatherers, of the union of each one's stretches, in
exchange time. The order book's holes are found by the book merge instead
(:mod:`kalshi.dedup.merge`, per market), so ``orderbook_delta`` is not listed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["CHANNEL_SID", "COVERAGE_KINDS", "channel_of", "holes"]

CHANNEL_SID = {
    "trade": 1,
    "ticker": 2,
    "market_lifecycle_v2": 3,
    "multivariate_market_lifecycle": 4,
}
"""The channels whose holes production records, and the ``sid`` their hole rows carry
(``gaps`` rows of the deduplicator: ``gatherer_id = 'dedup'``, ``conn_id = 0``,
``ticker`` NULL, ``kind = 'merge_hole'``; the sid, in the table's key
(``kalshi/sql/006_gap_sid.sql``), keeps two channels' holes starting in the same
microsecond apart)."""

COVERAGE_KINDS = ("outage", "reconnect", "stopped")
"""The gatherers' connection-wide gap kinds that mean "this connection received nothing"."""

_LABELS = {
    "trade": "trade",
    "ticker": "ticker",
    "lifecycle": "market_lifecycle_v2",
    "combo-lifecycle": "multivariate_market_lifecycle",
}

Stretch = tuple[int, int]  # [start, end) µs


def channel_of(detail: str) -> str | None:
    """The channel of a gatherer's connection-wide gap, from the connection label that
    starts its ``detail`` (``"ticker-0: ..."`` -> ``"ticker"``); ``None`` for the order
    book's connections and anything else."""
    label = detail.partition(":")[0].strip()
    return _LABELS.get(label.rpartition("-")[0])


def _union(stretches: Iterable[Stretch]) -> list[Stretch]:
    out: list[Stretch] = []
    for start, end in sorted(stretches):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _intersect(a: Sequence[Stretch], b: Sequence[Stretch]) -> list[Stretch]:
    out: list[Stretch] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def holes(
    uncovered: Mapping[str, Mapping[str, Sequence[Stretch]]], until: int
) -> dict[str, list[Stretch]]:
    """``channel -> [(start, end)]``: the stretches, ending by ``until``, that every
    gatherer of ``uncovered`` (``gatherer -> channel -> its stretches``, exchange time, µs)
    lacks. A gatherer with no stretch of a channel covered all of it: no hole there.
    ``until``: where every gatherer's stretches are known (a stretch reaching past it may
    still grow), so each hole returned is final."""
    out: dict[str, list[Stretch]] = {}
    if not uncovered:
        return out
    for channel in CHANNEL_SID:
        common: list[Stretch] | None = None
        for per_channel in uncovered.values():
            mine = _union(per_channel.get(channel, ()))
            common = mine if common is None else _intersect(common, mine)
        found = [s for s in common or [] if s[1] <= until]
        if found:
            out[channel] = found
    return out
