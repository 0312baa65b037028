"""Tolerant readers of a health document: a missing or mistyped value is simply absent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def number(value: object) -> float | None:
    """``value`` as a float when it is a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def records(value: object) -> list[Mapping[str, Any]]:
    """The mappings of a list (``connections``, ``top_markets``); anything else: []."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, Mapping)]


def total(entries: Iterable[object], key: str) -> int | float:
    """The sum of ``entry[key]`` over entries where it is a number."""
    result: int | float = 0
    for entry in entries:
        value = entry.get(key) if isinstance(entry, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            result += value
    return result
