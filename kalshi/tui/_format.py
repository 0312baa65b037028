"""Small text formatters for the live screen."""

from __future__ import annotations

import math
from collections.abc import Iterable

from kalshi.models.units import format_price

_BARS = "▁▂▃▄▅▆▇█"
NONE = "-"


def count(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NONE
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"


def rate(value: float | None) -> str:
    return NONE if value is None else f"{value:,.1f}"


def sparkline(values: Iterable[float]) -> str:
    points = list(values)
    top = max(points, default=0.0)
    if top <= 0:
        return _BARS[0] * len(points)
    return "".join(_BARS[round(v / top * (len(_BARS) - 1))] for v in points)


def duration(seconds: object) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return NONE
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{math.floor(seconds * 10) / 10:.1f}s"  # truncated: never shows "60.0s"


def age(seconds: object) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return NONE
    return f"{seconds:.1f}s"


def size(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return NONE
    if value < 1000:
        return f"{value} B"
    units = ("kB", "MB", "GB", "TB")
    amount, unit = value / 1000, 0
    while amount >= 1000 and unit < len(units) - 1:
        amount, unit = amount / 1000, unit + 1
    return f"{amount:.1f} {units[unit]}"


def price(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return NONE
    return "$" + format_price(value)


def scalar(value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return count(value)
    return str(value)
