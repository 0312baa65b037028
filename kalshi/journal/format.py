"""The journal line format: one JSON object per line, pure encode/decode (no I/O).

Every line carries ``gatherer_id``, ``conn_id``, ``frame_no``, ``direction``, ``wall_us``,
``mono_us`` and ``kind``. Frames (``kind == "frame"``) carry the frame either as ``text``
(valid UTF-8, stored as a JSON string, byte-exact on read) or as ``b64`` (anything else).
Markers (connect, subscribe, disconnect, resnapshot, gap, forget) carry ``detail``, an
object.
REST answers (``kind == "rest"``, direction ``in``, ``conn_id`` 0) carry both: the body as
received (``text`` or ``b64``, as a frame's) and ``detail`` (the request: ``path``,
``params``, and what the gatherer left out of its rows, e.g. ``skipped`` trade ids). A
``gap`` marker's ``detail.row`` holds a gap row the gatherer wrote outside the pipeline
(reconnect, outage, backfill, ...), in ``gaps`` column order. A ``forget`` marker
(``conn_id`` 0) says a complete market listing let the registry forget the markets held as
finalized since before ``detail.before_us`` (µs): a replay's registry forgets them there.

Every line ends with ``"crc":"<8 hex digits>"``, the CRC-32 of the line as it would be
without that member (``{...}`` up to and excluding ``,"crc":...``, plus the closing brace):
a flipped byte fails the line (:func:`decode_line` raises), and the line stays plain JSON
for other readers. Lines written before the checksum existed have none and are accepted.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Annotated, Any

import msgspec
import orjson
from attrs import frozen

__all__ = [
    "FRAME",
    "MARKER_KINDS",
    "REST",
    "JournalProblem",
    "JournalRecord",
    "decode_line",
    "decode_verified",
    "encode_frame",
    "encode_marker",
    "encode_rest",
    "json_object",
]

FRAME = "frame"
REST = "rest"
MARKER_KINDS = frozenset({"connect", "subscribe", "disconnect", "resnapshot", "gap", "forget"})
DIRECTIONS = frozenset({"in", "out"})
MARKER_DIRECTION = "local"
_INT_FIELDS = ("conn_id", "frame_no", "wall_us", "mono_us")
_CRC_KEY = b',"crc":"'
_CRC_TAIL = len(_CRC_KEY) + 8 + 2  # ,"crc":"xxxxxxxx"}
_crc32 = zlib.crc32


def _sealed(body: bytes) -> bytes:
    """``body`` (a JSON object, no newline) with its checksum member and a newline."""
    return body[:-1] + b'%s%08x"}\n' % (_CRC_KEY, _crc32(body))


def _sealed_form(line: bytes) -> bool:
    """True when ``line`` ends in a checksum member's form (its value not checked)."""
    start = len(line) - _CRC_TAIL
    return start >= 1 and line.endswith(b'"}') and line.startswith(_CRC_KEY, start)


def _checked(line: bytes) -> bool:
    """True when ``line`` (no ``\\r``) ends in a checksum member that matches, False when
    it has none (written before checksums); raises ``ValueError`` when it does not match.
    The CRC runs over the line up to the member, then over the closing brace."""
    start = len(line) - _CRC_TAIL
    if start < 1 or not line.endswith(b'"}') or line[start : start + len(_CRC_KEY)] != _CRC_KEY:
        return False
    try:
        expected = int(line[start + len(_CRC_KEY) : -2], 16)
    except ValueError:
        raise ValueError("checksum: not hexadecimal") from None
    if _crc32(b"}", _crc32(line[:start])) != expected:
        raise ValueError("checksum mismatch (a damaged line)")
    return True


class JournalRecord(msgspec.Struct, frozen=True, gc=False):
    """One journal line, decoded. ``raw`` is set for frames, ``detail`` for markers.

    ``label`` and ``channels`` come from the latest ``connect`` marker of the same
    (gatherer_id, conn_id) seen earlier in the read (empty when none was seen). ``source``
    locates a frame read from a capture (``file:line``, 1-based); a journal's frame is
    located by its ``gatherer_id``, ``conn_id`` and ``frame_no``.
    Immutable; a ``msgspec`` struct because a replay builds one per line.
    """

    gatherer_id: str
    conn_id: int
    frame_no: int
    direction: str
    wall_us: int
    mono_us: int
    kind: str
    raw: bytes = b""
    detail: dict[str, Any] = {}
    label: str = ""
    channels: tuple[str, ...] = ()
    source: str = ""  # a capture's frame: ``file:line`` it was read from (journal: "")


@frozen
class JournalProblem:
    """A line that could not be read: the file, its 1-based line number and why.
    ``lines``: how many lines it stands for (a file refused whole: every line of it from
    ``line_no`` on, none of which was read)."""

    path: str
    line_no: int
    reason: str
    lines: int = 1


def _head(
    gatherer_id: str, conn_id: int, frame_no: int, direction: str, wall_us: int, mono_us: int
) -> dict[str, Any]:
    return {
        "gatherer_id": gatherer_id,
        "conn_id": conn_id,
        "frame_no": frame_no,
        "direction": direction,
        "wall_us": wall_us,
        "mono_us": mono_us,
    }


_dumps = orjson.dumps
_DIRECTION_JSON = {"in": b'"in"', "out": b'"out"'}
# a frame line up to its text, after gatherer_id: the members in the general encoder's order
_FRAME_LINE = (
    b'%s%d,"frame_no":%d,"direction":%s,"wall_us":%d,"mono_us":%d,"kind":"frame","text":%s'
)
_FRAME_HEADS: dict[str, bytes] = {}  # gatherer_id -> the line's head up to conn_id's value


def _frame_head(gatherer_id: str) -> bytes:
    head = _FRAME_HEADS.get(gatherer_id)
    if head is None:
        head = b'{"gatherer_id":' + orjson.dumps(gatherer_id) + b',"conn_id":'
        if len(_FRAME_HEADS) < 64:  # a process has one or a few gatherer ids
            _FRAME_HEADS[gatherer_id] = head
    return head


def encode_frame(
    gatherer_id: str,
    conn_id: int,
    frame_no: int,
    direction: str,
    wall_us: int,
    mono_us: int,
    raw: bytes | str,
) -> bytes:
    """One line (with its trailing newline) for a frame; lossless for any bytes.

    The common frame (valid UTF-8, direction ``in`` or ``out``) is formatted from a
    preformatted head, no dict: the same bytes as :func:`_encode_frame_general`, which
    takes everything else (tests/journal)."""
    direction_json = _DIRECTION_JSON.get(direction)
    if direction_json is not None:
        try:
            text = _dumps(raw.decode("utf-8") if type(raw) is bytes else raw)
        except (UnicodeDecodeError, orjson.JSONEncodeError):
            pass
        else:
            body = _FRAME_LINE % (
                _frame_head(gatherer_id),
                conn_id,
                frame_no,
                direction_json,
                wall_us,
                mono_us,
                text,
            )
            return b'%s,"crc":"%08x"}\n' % (body, _crc32(b"}", _crc32(body)))
    return _encode_frame_general(gatherer_id, conn_id, frame_no, direction, wall_us, mono_us, raw)


def _encode_frame_general(
    gatherer_id: str,
    conn_id: int,
    frame_no: int,
    direction: str,
    wall_us: int,
    mono_us: int,
    raw: bytes | str,
) -> bytes:
    """:func:`encode_frame` for any frame, through a dict (the reference for its fast path)."""
    line = _head(gatherer_id, conn_id, frame_no, direction, wall_us, mono_us)
    line["kind"] = FRAME
    if isinstance(raw, str):
        try:
            line["text"] = raw
            return _sealed(orjson.dumps(line))
        except orjson.JSONEncodeError:
            # Lone surrogates cannot be JSON text; keep their exact code units.
            del line["text"]
            raw = raw.encode("utf-8", "surrogatepass")
    try:
        line["text"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        line["b64"] = base64.b64encode(raw).decode("ascii")
    return _sealed(orjson.dumps(line))


def encode_rest(
    gatherer_id: str, wall_us: int, mono_us: int, body: bytes, detail: dict[str, Any]
) -> bytes:
    """One line (with its trailing newline) for a REST answer's body and its request."""
    line = _head(gatherer_id, 0, 0, "in", wall_us, mono_us)
    line["kind"] = REST
    try:
        line["text"] = body.decode("utf-8")
    except UnicodeDecodeError:
        line["b64"] = base64.b64encode(body).decode("ascii")
    line["detail"] = detail
    return _sealed(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS))


def encode_marker(
    gatherer_id: str,
    conn_id: int,
    frame_no: int,
    kind: str,
    wall_us: int,
    mono_us: int,
    detail: dict[str, Any],
) -> bytes:
    """One line (with its trailing newline) for an in-band marker."""
    line = _head(gatherer_id, conn_id, frame_no, MARKER_DIRECTION, wall_us, mono_us)
    line["kind"] = kind
    line["detail"] = detail
    return _sealed(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS))


Labels = dict[tuple[str, int], tuple[str, tuple[str, ...]]]
"""``(gatherer_id, conn_id) -> (label, channels)`` from the connect markers read so far."""


# int64, as orjson reads integers (larger ones are left to the general path, which refuses
# them); bool is no integer to msgspec either.
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Line(msgspec.Struct, gc=False):
    """The common line, typed (the fast path of :func:`decode_line`)."""

    gatherer_id: str
    conn_id: _Int
    frame_no: _Int
    direction: str
    wall_us: _Int
    mono_us: _Int
    kind: str
    text: str | None = None
    b64: Any = None


_LINE = msgspec.json.Decoder(_Line)
_NO_LABEL: tuple[str, tuple[str, ...]] = ("", ())


def decode_line(
    line: bytes, labels: Labels | None = None, *, verified: bool = False
) -> JournalRecord:
    """Decode one line; raises ``ValueError`` saying what is wrong.

    ``verified``: the line is known to be as written (it came out of a zstd frame whose
    content checksum matched, :func:`kalshi.journal.reader.zstd_chunks`), so its own CRC
    is not computed again; its checksum member is still set apart for the general path.

    With ``labels``, a ``connect`` marker records its connection's label and channels there
    and every record of a known connection carries them (no copy per record).

    A frame carried as ``text`` with well-typed fields is read by one compiled ``msgspec``
    decoder; anything else (markers, ``b64``, a wrong type, damage) by the general path,
    which names what is wrong. Both give the same record (tests/journal).
    """
    if line.endswith(b"\r"):
        line = line.rstrip(b"\r")
    sealed = None if verified else _checked(line)
    try:
        head = _LINE.decode(line)
        text = head.text
        if head.kind == FRAME and text is not None and head.direction in DIRECTIONS:
            key = (head.gatherer_id, head.conn_id)
            label = _NO_LABEL if labels is None else labels.get(key, _NO_LABEL)
            return JournalRecord(
                head.gatherer_id,
                head.conn_id,
                head.frame_no,
                head.direction,
                head.wall_us,
                head.mono_us,
                FRAME,
                text.encode("utf-8"),
                {},
                label[0],
                label[1],
            )
    except (msgspec.DecodeError, UnicodeEncodeError):
        pass
    if sealed is None:
        sealed = _sealed_form(line)
    return _decode_general(line[: len(line) - _CRC_TAIL] + b"}" if sealed else line, labels)


def decode_verified(lines: list[bytes], labels: Labels) -> list[JournalRecord] | None:
    """:func:`decode_line` of each of ``lines`` (known as written: ``verified``), in
    order, when every one is a common frame line (kind ``frame``, ``text``, well-typed
    fields); ``None`` when any is not (a marker, ``b64``, damage, an empty line): the
    caller then takes :func:`decode_line` line by line, which names what is wrong. The
    same records as :func:`decode_line` of each (tests/journal), for less Python a line:
    no call per line, the label looked up once per run of one connection's lines."""
    try:
        heads = [_LINE.decode(line) for line in lines]
    except msgspec.DecodeError:
        return None
    out: list[JournalRecord] = []
    append = out.append
    key: tuple[str, int] = ("", -1)  # the connection of the previous line: runs share it
    label = _NO_LABEL
    try:
        for head in heads:
            text = head.text
            if head.kind != FRAME or text is None or head.direction not in DIRECTIONS:
                return None
            gatherer_id, conn_id = head.gatherer_id, head.conn_id
            if conn_id != key[1] or gatherer_id != key[0]:
                key = (gatherer_id, conn_id)
                label = labels.get(key, _NO_LABEL)
            append(
                JournalRecord(
                    gatherer_id,
                    conn_id,
                    head.frame_no,
                    head.direction,
                    head.wall_us,
                    head.mono_us,
                    FRAME,
                    text.encode("utf-8"),
                    {},
                    label[0],
                    label[1],
                )
            )
    except UnicodeEncodeError:
        return None
    return out


def json_object(line: bytes) -> dict[str, Any]:
    """``line`` parsed as one JSON object (a journal line, a capture line). Raises
    ``ValueError`` naming what is wrong: invalid JSON, or JSON of another type."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _decode_general(line: bytes, labels: Labels | None) -> JournalRecord:
    """:func:`decode_line` for any line, checksum member already removed."""
    obj = json_object(line)
    for name in _INT_FIELDS:
        value = obj.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    gatherer_id = obj.get("gatherer_id")
    direction = obj.get("direction")
    kind = obj.get("kind")
    if not isinstance(gatherer_id, str):
        raise ValueError(f"gatherer_id: expected a string, got {gatherer_id!r}")
    if not isinstance(kind, str):
        raise ValueError(f"kind: expected a string, got {kind!r}")
    raw = b""
    detail: dict[str, Any] = {}
    if kind in (FRAME, REST):
        if not isinstance(direction, str) or direction not in DIRECTIONS:  # [..]: unhashable
            raise ValueError(f"direction: expected 'in' or 'out', got {direction!r}")
        if isinstance(obj.get("text"), str):
            raw = obj["text"].encode("utf-8")
        elif isinstance(obj.get("b64"), str):
            try:
                raw = base64.b64decode(obj["b64"], validate=True)
            except binascii.Error as exc:
                raise ValueError(f"b64: {exc}") from None
        else:
            raise ValueError(f"{kind} without a text or b64 field")
        if kind == REST:
            found = obj.get("detail", {})
            if not isinstance(found, dict):
                raise ValueError(f"detail: expected an object, got {found!r}")
            detail = found
    else:
        if not isinstance(direction, str):
            raise ValueError(f"direction: expected a string, got {direction!r}")
        found = obj.get("detail", {})
        if not isinstance(found, dict):
            raise ValueError(f"detail: expected an object, got {found!r}")
        detail = found
    label: tuple[str, tuple[str, ...]] = ("", ())
    if labels is not None:
        key = (gatherer_id, obj["conn_id"])
        if kind == "connect":
            channels = tuple(str(c) for c in detail.get("channels", ()) or ())
            labels[key] = (str(detail.get("label", "")), channels)
        label = labels.get(key, label)
    return JournalRecord(
        gatherer_id,
        obj["conn_id"],
        obj["frame_no"],
        direction,
        obj["wall_us"],
        obj["mono_us"],
        kind,
        raw,
        detail,
        label[0],
        label[1],
    )
