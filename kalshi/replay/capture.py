"""One line of a third-party capture -> the frame's exact bytes and its receive time.

A capture is JSON lines recorded by any Kalshi client (``docs/replay.md``, "Captures"):

* **bare frames**: each line is the frame itself, ``{"type": ..., "sid": ..., "seq": ...,
  "msg": {...}}``;
* **wrapped frames**: each line is an object holding the frame in one field and the local
  receive time in another, e.g. ``{"recv_ms": 1785901540025, "event": {...}}``. The frame
  field may also hold the frame as a JSON string (the text as received);
* **time-prefixed frames**: ``<receive time> <frame>`` per line, the raw form other
  recorders (tardis.dev) write, e.g. ``2026-08-05T03:45:40.0250000Z {"type": ...}``; the
  time is RFC 3339 or an epoch number (:func:`split_time_prefix`).

:func:`detect` finds the shape from the first line (fields named in :data:`FRAME_FIELDS` and
:data:`TIME_FIELDS`, else the only object-valued field and the only time-like field); the
user names the fields when it cannot (``--frame-field``, ``--time-field``). The frame's
bytes are sliced out of the line, never re-encoded, so the pipeline sees exactly what the
exchange sent (``kalshi-api.md`` section "Sequence numbers" keys off those frames).

Times become µs since the epoch. The unit is the user's (``--time-unit``), else the field
name's suffix (``_ms``, ``_us``, ``_ns``, ``_s``), else each value's magnitude;
strings are RFC 3339 or a number's decimal text (read exactly, as the number); fractional
numbers are read exactly from their decimal text. A receive time is our clock's and is
stored in µs: a finer part (ns integers, RFC 3339 fractions of 7 or more digits alike) is
truncated toward the past. A receive-time field that is there but cannot be read is an
error (detection: the file is refused; a later line: that line), never a fallback.
Without a receive time a frame gets its exchange time (``msg.ts_ms``, else ``msg.ts``);
frames that have neither take a neighbour's (:mod:`kalshi.replay.source`).
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson
from attrs import frozen

from kalshi.errors import UnitError
from kalshi.journal.format import json_object
from kalshi.models.units import parse_rfc3339_us

__all__ = [
    "FRAME_FIELDS",
    "TIME_FIELDS",
    "TIME_UNITS",
    "CaptureFormat",
    "CaptureLine",
    "TimeUnit",
    "decode_capture_line",
    "detect",
    "exchange_time_us",
    "is_journal_line",
    "split_time_prefix",
]

TimeUnit = Literal["s", "ms", "us", "ns"]
TIME_UNITS: tuple[TimeUnit, ...] = ("s", "ms", "us", "ns")
FRAME_FIELDS = ("event", "frame", "data", "message", "payload", "raw", "ws", "text")
TIME_FIELDS = (
    "recv_ms",
    "recv_us",
    "recv_ns",
    "recv_ts",
    "recv_time",
    "received_at",
    "received_ms",
    "received",
    "receive_time",
    "local_ts",
    "timestamp",
    "ts",
    "time",
    "t",
)
_PER_US = {"s": Decimal(1_000_000), "ms": Decimal(1_000), "us": Decimal(1), "ns": Decimal(1) / 1000}
_SUFFIX_UNITS: tuple[tuple[str, TimeUnit], ...] = (
    ("_ms", "ms"),
    ("_us", "us"),
    ("_ns", "ns"),
    ("_sec", "s"),
    ("_s", "s"),
)
# A RFC 3339 fraction past the µs: its digits after the sixth (truncated: toward the past).
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_SUB_US = re.compile(r"(\.[0-9]{6})[0-9]+")
# Strings (with escapes) and the structural characters of JSON: enough to find a value's span.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')


@frozen
class CaptureFormat:
    """The shape of a capture's lines. ``frame_field`` ``None``: bare frames (the line is
    the frame); ``time_field`` ``None``: no receive time; ``time_unit`` ``None``: from
    the field name, else the value's magnitude; ``time_prefix``: each line is
    ``<receive time> <JSON>`` and the time is read from the prefix (``time_field`` unused)."""

    frame_field: str | None = None
    time_field: str | None = None
    time_unit: TimeUnit | None = None
    time_prefix: bool = False  # ``<receive time> <frame>`` lines (the time ahead of the JSON)


@frozen
class CaptureLine:
    """A decoded capture line: the frame exactly as received, and its receive time in µs
    since the epoch (``None`` when the line has none)."""

    raw: bytes
    recv_us: int | None


def is_journal_line(obj: object) -> bool:
    """Our own journal's line (``kalshi/journal/format.py``), not a capture."""
    return isinstance(obj, dict) and "gatherer_id" in obj and "kind" in obj and "wall_us" in obj


def _is_frame(value: object) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("type"), str)
    return isinstance(value, str) and value.lstrip().startswith("{")


def detect(obj: object, given: CaptureFormat | None = None) -> CaptureFormat:
    """The format of a capture from its first line (decoded); fields ``given`` by the user
    win. Raises ``ValueError`` naming the option to give when the shape is ambiguous."""
    given = given or CaptureFormat()
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    frame_field = given.frame_field
    if frame_field is None and not isinstance(obj.get("type"), str):
        named = [k for k in FRAME_FIELDS if k in obj and _is_frame(obj[k])]
        found = named or [k for k, v in obj.items() if _is_frame(v)]
        if len(found) != 1:
            what = "no field holds" if not found else f"fields {found} each hold"
            raise ValueError(f"cannot tell which field is the frame ({what} one): --frame-field")
        frame_field = found[0]
    time_field = given.time_field
    if time_field is None and frame_field is not None and not given.time_prefix:
        others = {k: v for k, v in obj.items() if k != frame_field}
        present = [k for k in TIME_FIELDS if k in others]
        if present and not _time_like(others[present[0]]):
            raise ValueError(
                f"receive time {present[0]!r}: cannot read {others[present[0]]!r} "
                "(give --time-field, or fix the value)"
            )
        named = [k for k in TIME_FIELDS if k in others and _time_like(others[k])]
        found = named or [k for k, v in others.items() if _time_like(v)]
        if len(found) > 1 and not named:
            raise ValueError(f"cannot tell which field is the receive time {found}: --time-field")
        time_field = found[0] if found else None
    unit = given.time_unit
    if unit is None and time_field is not None:
        unit = next((u for suffix, u in _SUFFIX_UNITS if time_field.endswith(suffix)), None)
    return CaptureFormat(frame_field, time_field, unit, given.time_prefix)


def _time_like(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, str):
        try:
            return to_us(value, None, "") > 0
        except ValueError:
            return False
    return False


def _rfc3339_floor_us(text: str, what: str) -> int:
    """RFC 3339 -> µs, a fraction finer than a µs truncated toward the past (receive
    times are our clock's, kept in µs). Raises ``ValueError`` naming ``what``."""
    try:
        return parse_rfc3339_us(_SUB_US.sub(r"\1", text, count=1))
    except UnitError as exc:
        raise ValueError(f"{what}: {exc}") from None


def magnitude_unit(value: int | float) -> TimeUnit:
    """The unit of an epoch time by its size (seconds are ~1.7e9 in this century)."""
    size = abs(value)
    if size < 1e11:
        return "s"
    if size < 1e14:
        return "ms"
    if size < 1e17:
        return "us"
    return "ns"


def to_us(value: object, unit: TimeUnit | None, what: str) -> int:
    """An epoch time -> µs. Numbers in ``unit`` (``None``: by magnitude), strings RFC 3339
    or a number's decimal text (read as that number). Sub-µs parts (of numbers and RFC
    3339 fractions alike) are truncated toward the past. Raises ``ValueError``."""
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        return _rfc3339_floor_us(value, what)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what}: expected a time, got {value!r}")
    try:
        exact = Decimal(value) if isinstance(value, int | str) else Decimal(repr(value))
    except InvalidOperation:
        raise ValueError(f"{what}: expected a time, got {value!r}") from None
    chosen = unit or magnitude_unit(float(exact))
    return int((exact * _PER_US[chosen]).to_integral_value(rounding="ROUND_FLOOR"))


def exchange_time_us(frame: object) -> int | None:
    """The exchange's own time in a frame (``msg.ts_ms``, else ``msg.ts``), in µs."""
    if not isinstance(frame, dict):
        return None
    msg = frame.get("msg")
    if not isinstance(msg, dict):
        return None
    for key, unit in (("ts_ms", "ms"), ("ts", None)):
        value = msg.get(key)
        if value is not None:
            try:
                return to_us(value, unit, key)  # type: ignore[arg-type]
            except ValueError:
                continue
    return None


@functools.lru_cache(maxsize=64)
def _key_pattern(key: str, leading_comma: bool) -> re.Pattern[bytes]:
    name = re.escape(orjson.dumps(key))
    return re.compile((rb",\s*" if leading_comma else b"") + name + rb"\s*:\s*")


def _quick_span(line: bytes, obj: dict[str, Any], key: str) -> tuple[int, int] | None:
    """The span of ``obj[key]`` from the key's first match to the next key's last match
    (or the closing brace), kept only if those bytes decode to the same value. A wrong
    cut cannot pass: inside a JSON string every quote of the frame would be escaped."""
    found = _key_pattern(key, False).search(line)
    if found is None:
        return None
    keys = list(obj)
    at = keys.index(key)
    if at == len(keys) - 1:
        end = line.rstrip().rfind(b"}")
    else:
        nexts = list(_key_pattern(keys[at + 1], True).finditer(line, found.end()))
        if not nexts:
            return None
        end = nexts[-1].start()
    start = found.end()
    while end > start and line[end - 1 : end] in (b" ", b"\t", b"\r", b"\n"):
        end -= 1
    try:
        same = orjson.loads(line[start:end]) == obj[key]
    except orjson.JSONDecodeError:
        return None
    return (start, end) if same else None


def value_span(line: bytes, key: str) -> tuple[int, int] | None:
    """Byte offsets of the value of top-level ``key`` in the JSON object ``line``."""
    target = orjson.dumps(key)
    depth = 0
    expect_value = False
    start = -1
    last_string = b""
    for match in _TOKEN.finditer(line):
        token = match.group()
        first = token[:1]
        if start >= 0:
            if first in b"{[":
                depth += 1
            elif first in b"}]":
                depth -= 1
                if depth == 1:
                    return start, match.end()
            continue
        if expect_value:
            if first in b"{[":
                start = match.start()
                depth += 1
                continue
            if first == b'"':
                return match.start(), match.end()
            return None  # a scalar: not a frame
        if first in b"{[":
            depth += 1
        elif first in b"}]":
            depth -= 1
        elif first == b":" and depth == 1 and last_string == target:
            expect_value = True
        if first == b'"':
            last_string = token
        elif first != b":":
            last_string = b""
    return None


def split_time_prefix(line: bytes) -> tuple[str, bytes] | None:
    """A ``<receive time> <JSON object>`` line -> (the time's text, the object's bytes);
    ``None`` when the line is not that shape (no text, then white space, before its first
    ``{``)."""
    at = line.find(b"{")
    if at <= 0 or line[at - 1 : at] not in (b" ", b"\t"):
        return None
    prefix = line[:at].strip()
    if not prefix:
        return None
    return prefix.decode("utf-8", "replace"), line[at:]


def decode_capture_line(line: bytes, fmt: CaptureFormat) -> tuple[CaptureLine, Any]:
    """One capture line -> (the frame's bytes and receive time, the decoded frame).

    Raises ``ValueError`` saying what is wrong (bad JSON, no frame field, bad time)."""
    prefix_us = None
    if fmt.time_prefix:
        split = split_time_prefix(line)
        if split is None:
            raise ValueError("expected '<receive time> <frame>'")
        prefix_us = to_us(split[0], fmt.time_unit, "receive time")
        line = split[1]
    obj = json_object(line)
    if fmt.frame_field is None:
        return CaptureLine(line.strip(), prefix_us), obj
    if fmt.frame_field not in obj:
        raise ValueError(f"no {fmt.frame_field!r} field (the frame)")
    value = obj[fmt.frame_field]
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        try:
            frame: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            frame = None  # kept: the pipeline counts it invalid, as it would live
    elif isinstance(value, dict):
        span = _quick_span(line, obj, fmt.frame_field) or value_span(line, fmt.frame_field)
        if span is None:
            raise ValueError(f"{fmt.frame_field!r}: cannot find the frame's bytes")
        raw, frame = line[span[0] : span[1]], value
    else:
        raise ValueError(f"{fmt.frame_field!r}: expected a frame, got {value!r}")
    recv_us = prefix_us
    if fmt.time_field is not None and not fmt.time_prefix:
        if fmt.time_field not in obj:
            raise ValueError(f"no {fmt.time_field!r} field (the receive time)")
        recv_us = to_us(obj[fmt.time_field], fmt.time_unit, fmt.time_field)
    return CaptureLine(raw, recv_us), frame
