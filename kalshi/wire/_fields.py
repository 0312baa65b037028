"""Field readers shared by the WebSocket and REST decoders.

Each raises ``DecodeError`` (or ``UnitError``) naming the field, so a bad frame comes back
as ``Invalid`` with a precise reason.
"""

from __future__ import annotations

from typing import Any

from kalshi.errors import DecodeError
from kalshi.models.book import Level, Side
from kalshi.models.market import PriceRange
from kalshi.models.units import PRICE_SCALE, SIZE_SCALE, parse_price, parse_rfc3339_us, parse_size

__all__ = [
    "CENT",
    "finest_us",
    "levels",
    "opt_bool",
    "opt_int",
    "opt_price",
    "opt_size",
    "opt_str",
    "opt_time",
    "price_ranges",
    "req_int",
    "req_price",
    "req_size",
    "req_str",
    "side",
    "trade_time",
    "ts_us",
]

CENT = PRICE_SCALE // 100  # one cent in price units
_MISSING = object()


def _get(obj: dict[str, Any], key: str) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        raise DecodeError(f"missing {key}")
    return value


def req_str(obj: dict[str, Any], key: str) -> str:
    value = _get(obj, key)
    if type(value) is not str:
        raise DecodeError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def opt_str(obj: dict[str, Any], key: str, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is not str:
        raise DecodeError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def req_int(obj: dict[str, Any], key: str) -> int:
    value = _get(obj, key)
    if type(value) is not int:
        raise DecodeError(f"{key}: expected an integer, got {type(value).__name__}")
    return value


def opt_int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise DecodeError(f"{key}: expected an integer, got {type(value).__name__}")
    return value


def opt_bool(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not bool:
        raise DecodeError(f"{key}: expected true or false, got {type(value).__name__}")
    return value


def _with_key(parse: Any, value: Any, key: str) -> int:
    try:
        result: int = parse(value)
    except DecodeError as exc:
        raise type(exc)(f"{key}: {exc}") from None
    return result


def req_price(obj: dict[str, Any], key: str) -> int:
    return _with_key(parse_price, _get(obj, key), key)


def opt_price(obj: dict[str, Any], key: str) -> int | None:
    """A dollar string, or ``None`` when absent or ``""`` (never-traded markets)."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    return _with_key(parse_price, value, key)


def req_size(obj: dict[str, Any], key: str) -> int:
    return _with_key(parse_size, _get(obj, key), key)


def opt_size(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    return _with_key(parse_size, value, key)


def opt_time(obj: dict[str, Any], key: str) -> int | None:
    """An RFC 3339 string in µs, ``None`` when absent or empty."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    return _with_key(parse_rfc3339_us, value, key)


def side(obj: dict[str, Any], key: str) -> Side:
    value = _get(obj, key)
    if value == "yes":
        return Side.YES
    if value == "no":
        return Side.NO
    raise DecodeError(f"{key}: expected 'yes' or 'no', got {value!r}")


def trade_time(micros: int) -> int:
    """A trade's canonical exchange time: its moment truncated to the millisecond (µs).

    The WS ``trade`` frame carries ``ts_ms`` (kalshi-api.md §3.4), REST ``created_time``
    carries microseconds (§4.6); both decoders keep the millisecond, so a trade seen live
    and again by backfill has one key ``(exchange_ts, trade_id)`` and is one row."""
    return micros - micros % 1000


def finest_us(ms: int, text: object) -> int:
    """``ms`` (Unix ms) in µs, refined by an RFC 3339 ``text`` of the same moment: real
    deltas send ``"…T03:45:42.00174Z"`` beside ``ts_ms`` …42001 (issue 17; kalshi-api.md
    §3.1). Kalshi trims the fraction's trailing zeros (a tenth of the real deltas in
    tests/data/kalshi-gold15m have 1 to 5 digits), so any length of 0 to 9 digits is read
    (zero past the sixth); ``Z`` or an offset. The text refines ``ms`` when it parses
    exactly (:func:`~kalshi.models.units.parse_rfc3339_us`) to a moment in the same
    millisecond; any other text (another moment, not RFC 3339, finer than a µs) refines
    nothing: the result is ``ms * 1000``.

    The common text (``Z``, a '.' at 19 and 4 to 6 ASCII digits) is read with the second
    of its ``…T03:45:42`` prefix memoised; a ``Z`` text of at most 3 digits can refine
    nothing (``ms * 1000`` at once); anything else takes
    :func:`_finest_general` (the reference: same values)."""
    if type(text) is not str:
        return ms * 1000
    n = len(text)
    if 24 < n < 28 and text[19] == "." and text[-1] in "Zz":
        second = _SECONDS.get(text[:19])
        frac = text[20:-1]
        if second is not None and frac.isdigit() and frac.isascii():
            micros = second + int(frac) * _FRACTION_SCALE[n]
            return micros if micros // 1000 == ms else ms * 1000
    elif n < 20 or (n < 25 and text[-1] in "Zz" and "." not in text[:19]):
        return ms * 1000  # no digit finer than the millisecond (or no RFC 3339 text)
    return _finest_general(ms, text)


def _finest_general(ms: int, text: object) -> int:
    """:func:`finest_us` by the rules as written (the reference for its fast path);
    memoises the second of a common text's prefix for the fast path."""
    if type(text) is not str:
        return ms * 1000
    try:
        micros = parse_rfc3339_us(text)
    except DecodeError:
        return ms * 1000
    n = len(text)
    if text[-1] in "Zz" and "." not in text[:19] and (n == 20 or (21 < n < 28 and text[19] == ".")):
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[text[:19]] = micros - (int(text[20:-1]) * _FRACTION_SCALE[n] if n > 20 else 0)
    return micros if micros // 1000 == ms else ms * 1000


# The µs of a fraction of ``len(text) - 21`` digits is ``int(fraction) * 10**(27 - len)``.
_FRACTION_SCALE = {n: 10 ** (27 - n) for n in range(22, 28)}
# "2026-08-05T03:45:42" -> its second in µs since the epoch (deltas share their second).
_SECONDS: dict[str, int] = {}


def ts_us(msg: dict[str, Any]) -> int | None:
    """The message time in µs at the finest precision the frame carries: ``ts_ms``
    refined by an RFC 3339 ``ts`` or ``time`` with microseconds (:func:`finest_us`), else
    ``ts`` (int seconds or RFC 3339), else ``time``, else None."""
    ms = msg.get("ts_ms")
    if ms is not None:
        if type(ms) is not int:
            raise DecodeError(f"ts_ms: expected an integer, got {type(ms).__name__}")
        text = msg.get("ts")
        return finest_us(ms, text if type(text) is str else msg.get("time"))
    ts = msg.get("ts")
    if ts is None:
        return opt_time(msg, "time")
    if type(ts) is int:
        return ts * 1_000_000
    if type(ts) is str:
        return _with_key(parse_rfc3339_us, ts, "ts")
    raise DecodeError(f"ts: expected seconds or an RFC 3339 string, got {type(ts).__name__}")


def levels(
    msg: dict[str, Any], key: str, legacy_dollars: str, legacy_cents: str
) -> tuple[Level, ...]:
    """A ladder ``[[price, count], ...]`` from the current ``*_fp`` key or a legacy one.

    Current: ``[["0.0800", "300.00"], ...]``; pre-2026-03: ``[["0.080", 300], ...]`` under
    ``yes_dollars`` or ``[[8, 300], ...]`` (cents, whole contracts) under ``yes``.
    A missing key means the side is empty.
    """
    raw = msg.get(key)
    mode = "fp"
    if raw is None:
        raw, mode = msg.get(legacy_dollars), "dollars"
        if raw is None:
            raw, mode = msg.get(legacy_cents), "cents"
            if raw is None:
                return ()
    if type(raw) is not list:
        raise DecodeError(f"{key}: expected a list of [price, size] pairs")
    out: list[Level] = []
    for i, pair in enumerate(raw):
        if type(pair) is not list or len(pair) != 2:
            raise DecodeError(f"{key}[{i}]: expected a [price, size] pair")
        price, size = pair
        where = f"{key}[{i}]"
        if mode == "cents":
            if type(price) is not int or type(size) is not int:
                raise DecodeError(f"{where}: expected integer cents and count")
            out.append((price * CENT, size * SIZE_SCALE))
            continue
        p = _with_key(parse_price, price, where)
        if mode == "fp":
            s = _with_key(parse_size, size, where)
        elif type(size) is int:
            s = size * SIZE_SCALE
        else:
            s = _with_key(parse_size, size, where)
        out.append((p, s))
    return tuple(out)


def price_ranges(obj: dict[str, Any], key: str = "price_ranges") -> tuple[PriceRange, ...]:
    raw = obj.get(key)
    if raw is None:
        return ()
    if type(raw) is not list:
        raise DecodeError(f"{key}: expected a list")
    out = []
    for i, item in enumerate(raw):
        if type(item) is not dict:
            raise DecodeError(f"{key}[{i}]: expected an object")
        out.append(
            PriceRange(req_price(item, "start"), req_price(item, "end"), req_price(item, "step"))
        )
    return tuple(out)
