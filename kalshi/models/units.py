"""Exact fixed-point units.

* prices: integer hundred-thousandths of a dollar (``"0.4200"`` -> ``42000``)
* sizes (contract counts): integer hundredths of a contract (``"136.00"`` -> ``13600``)
* timestamps: integer microseconds since the Unix epoch

Parsing a decimal string that does not fit the unit exactly raises
:class:`~kalshi.errors.UnitError`; nothing is ever rounded.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache

from kalshi.errors import UnitError

__all__ = [
    "DOLLAR",
    "PRICE_SCALE",
    "SIZE_SCALE",
    "format_price",
    "format_rfc3339_us",
    "format_size",
    "parse_price",
    "parse_rfc3339_us",
    "parse_size",
]

PRICE_DIGITS = 5
SIZE_DIGITS = 2
PRICE_SCALE: int = 10**PRICE_DIGITS
SIZE_SCALE: int = 10**SIZE_DIGITS
DOLLAR = PRICE_SCALE  # one dollar in price units

_DIGITS = frozenset("0123456789")


def _parse_fixed(text: object, digits: int, what: str) -> int:
    if type(text) is not str:
        raise UnitError(f"{what}: expected a decimal string, got {type(text).__name__}")
    # The wire's own form (ASCII digits, an optional "-", exactly ``digits`` decimals): one
    # int() of the digits. Anything else takes the general rules below (same values).
    whole, dot, frac = text.partition(".")
    if (
        dot
        and len(frac) == digits
        and text.isascii()
        and frac.isdigit()
        and (whole.isdigit() or (whole[:1] == "-" and whole[1:].isdigit()))
    ):
        return int(whole + frac)
    return _parse_general(text, digits, what)


def _parse_general(text: str, digits: int, what: str) -> int:
    """:func:`_parse_fixed` by the general rules (the reference for its fast path)."""
    body = text
    negative = False
    if body[:1] in ("-", "+"):
        negative = body[0] == "-"
        body = body[1:]
    whole, dot, frac = body.partition(".")
    if not whole or not _DIGITS.issuperset(whole) or (dot and not frac):
        raise UnitError(f"{what}: not a decimal number: {text!r}")
    if frac:
        if not _DIGITS.issuperset(frac):
            raise UnitError(f"{what}: not a decimal number: {text!r}")
        if len(frac) > digits:
            if frac[digits:].strip("0"):
                raise UnitError(f"{what}: {text!r} has more than {digits} decimal places")
            frac = frac[:digits]
    scale: int = 10**digits
    value = int(whole) * scale + (int(frac.ljust(digits, "0")) if frac else 0)
    return -value if negative else value


# The vocabulary of price and size strings on the wire is small (a price grid has at most
# 10 001 points), so parsed values are memoised: the hot path becomes one dict lookup.
_CACHE_LIMIT = 1 << 16
_price_cache: dict[str, int] = {}
_size_cache: dict[str, int] = {}


def parse_price(text: object) -> int:
    """``"0.4200"`` -> ``42000`` (hundred-thousandths of a dollar), 0 to ``DOLLAR``.

    A price is a dollar amount between 0 and 1 inclusive (kalshi-api.md §3.8: every
    market's ``price_ranges`` lie within 0.0000-1.0000); one outside, ``"1.2000"`` or
    ``"-0.1000"``, raises ``UnitError`` naming it, as a malformed string does. Only good
    values enter the memo, so the decoders' inline memo lookups see no other.
    """
    if type(text) is str:
        value = _price_cache.get(text)
        if value is not None:
            return value
    value = _parse_fixed(text, PRICE_DIGITS, "price")
    if not 0 <= value <= DOLLAR:
        raise UnitError(f"price: {text!r} is outside 0 to 1 dollars")
    if len(_price_cache) >= _CACHE_LIMIT:
        _price_cache.clear()
    _price_cache[text] = value  # type: ignore[index]  # text is a str once parsed
    return value


def parse_size(text: object) -> int:
    """``"136.00"`` -> ``13600`` (hundredths of a contract); may be signed."""
    if type(text) is str:
        value = _size_cache.get(text)
        if value is not None:
            return value
    value = _parse_fixed(text, SIZE_DIGITS, "size")
    if len(_size_cache) >= _CACHE_LIMIT:
        _size_cache.clear()
    _size_cache[text] = value  # type: ignore[index]  # text is a str once parsed
    return value


def _format_fixed(value: int, digits: int, min_digits: int) -> str:
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**digits)
    frac_text = str(frac).rjust(digits, "0")
    trimmed = frac_text.rstrip("0")
    if len(trimmed) < min_digits:
        trimmed = frac_text[:min_digits]
    return f"{sign}{whole}.{trimmed}"


def format_price(value: int) -> str:
    """``42000`` -> ``"0.4200"`` (4 decimals, 5 when the last one is used)."""
    return _format_fixed(value, PRICE_DIGITS, 4)


def format_size(value: int) -> str:
    """``13600`` -> ``"136.00"``."""
    if value >= 0:  # always two decimals (SIZE_DIGITS): one format, no trimming
        whole, frac = divmod(value, SIZE_SCALE)
        return f"{whole}.{frac:02d}"
    whole, frac = divmod(-value, SIZE_SCALE)
    return f"-{whole}.{frac:02d}"


def parse_rfc3339_us(text: object) -> int:
    """``"2022-11-22T20:44:01.123Z"`` -> microseconds since the epoch, exactly.

    RFC 3339 ``date-time`` only: ``YYYY-MM-DD``, ``T`` (``t`` or a space), ``HH:MM:SS``, a
    fraction of any number of digits after a '.' (Kalshi trims trailing zeros:
    ``".00174"`` is 1 740 µs), ``Z`` (``z``) or ``±HH:MM``. Fractions longer than
    microseconds must be zero past the sixth digit. Anything else (an ISO week date, a
    ',' before the fraction, which ``datetime.fromisoformat`` takes and whose fraction the
    old reading dropped) raises ``UnitError``.
    """
    match = _RFC3339.fullmatch(text) if type(text) is str else None
    if match is None:
        raise UnitError(f"timestamp: not an RFC 3339 string: {text!r}")
    year, month, day, hour, minute, second, frac, sign, off_h, off_m = match.groups("")
    if len(frac) > 6:
        if frac[6:].strip("0"):
            raise UnitError(f"timestamp: {text!r} is finer than a microsecond")
        frac = frac[:6]
    hours, minutes, secs = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or secs > 59:
        raise UnitError(f"timestamp: not an RFC 3339 string: {text!r}")
    try:
        days = _epoch_day(year, month, day)
    except ValueError as exc:
        raise UnitError(f"timestamp: not an RFC 3339 string: {text!r}") from exc
    seconds = days * 86_400 + hours * 3600 + minutes * 60 + secs
    if sign:
        if int(off_h) > 23 or int(off_m) > 59:
            raise UnitError(f"timestamp: not an RFC 3339 offset: {text!r}")
        offset = int(off_h) * 3600 + int(off_m) * 60
        seconds += -offset if sign == "+" else offset
    return seconds * 1_000_000 + (int(frac.ljust(6, "0")) if frac else 0)


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d\d):(\d\d))",
    re.ASCII,
)


@lru_cache(maxsize=1024)
def _epoch_day(year: str, month: str, day: str) -> int:
    """Days from 1970-01-01 to a date's digits (``ValueError`` when no such date)."""
    return (date(int(year), int(month), int(day)) - _EPOCH_DATE).days


_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    """``"2022-11-22T20:44:01"`` of a second since the epoch (memoised: the simulator
    formats every message's time, and most share their second with the one before;
    a tenth of its CPU at 20 000 msgs/s was this strftime)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_rfc3339_us(micros: int, *, digits: int = 3, trim: bool = False) -> str:
    """Microseconds since the epoch -> ``"2022-11-22T20:44:01.123Z"`` (``digits`` of
    fraction, 0 to 6). ``trim`` drops the fraction's trailing zeros, and its '.' when
    nothing is left, as Kalshi sends times: ``"…T03:45:42.00174Z"`` for 1 740 µs,
    ``"…T03:45:42Z"`` for a whole second (the real deltas of tests/data/kalshi-gold15m)."""
    seconds, frac = divmod(micros, 1_000_000)
    moment = _second(seconds)
    fraction = str(frac).rjust(6, "0")[:digits]
    if trim:
        fraction = fraction.rstrip("0")
    if not fraction:
        return moment + "Z"
    return f"{moment}.{fraction}Z"
