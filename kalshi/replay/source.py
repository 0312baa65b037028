"""Read anything recorded into journal records: our journal, or a capture of Kalshi frames.

:func:`read_records` takes files, directories (recursively: every file but hidden ones),
``-`` for stdin and ``s3://bucket/prefix`` (every object but hidden ones), plain, gzip,
zstd, xz or bzip2 (told by their first bytes, not their names). Each file is read as our
journal when its first readable line (JSON, or time-prefixed JSON; a torn line is reported
and the next one tried) is a journal line, else as a capture
(:mod:`kalshi.replay.capture`; a UTF-8 byte order mark at its start is dropped, a blank
line skipped and counted); a file whose shape cannot be read (a JSON array, ambiguous
fields, binary content, or :data:`_UNDECIDED` lines none of which is JSON) is one
:class:`JournalProblem` whose ``lines`` counts every line of it not read. A capture
becomes what a gatherer would have journaled (``docs/replay.md``, "Captures"):

* gatherer ``capture``; every frame an ``in`` frame with ``wall_us`` = its receive time,
  the bytes exactly as recorded;
* **sessions**: one stream across every file read together (books and ``seq`` go on across
  a file boundary); a new session starts where a ``seq`` goes back below where the
  session began on its ``sid`` (the recorder reconnected: Kalshi restarts ``sid`` and
  ``seq`` per connection, ``kalshi-api.md`` 2.4), or goes back at a file's first frame,
  unless the step is at most :data:`REORDER_FRAMES` while none of the sid's frames has left
  the window (its first frames read swapped: put back in order);
* **identity**: a session's frames read from one file are a connection whose keys come
  from the file alone (``docs/replay.md``, "Identity of a capture's rows"): ``conn_id`` =
  the receive time (µs) of its first frame + CRC-32 of that frame's bytes mod 10^6,
  ``frame_no`` counts from 1; a ``connect`` marker opens it (``continues``: the session's
  connection in the previous file) and a ``disconnect`` marker closes the session when the
  next one starts, so a file replayed alone, with others, or again gives the same rows;
* **order**: a frame received a little late (up to :data:`REORDER_FRAMES` frames) is put
  back in ``seq`` order on its ``sid``; a later one is a :class:`JournalProblem` at its
  ``file:line`` and starts a new session;
* **sequence rule** (``seq_check``): ``contiguous`` (every skipped ``seq`` is a lost frame,
  as live), ``filtered`` (the recorder kept only some markets of wider subscriptions: a
  skipped ``seq`` belongs to another market and proves nothing), or ``auto``: filtered when
  more than 10 % of the ``seq`` steps among a session's first 1,000 frames skip numbers,
  or, with fewer than 20 steps (too few to tell a loss from a filtered capture), when any
  does: a skip is then not taken for a loss (no false ``seq_gap``; the continuity says
  completeness is not provable); else contiguous. The ``connect`` marker's ``detail`` says
  which rule and why.

``until_us`` (point-in-time reads) stops decoding each file at its first record received
more than :data:`STOP_GRACE_US` after it, and does not decode journal files opened (their
name's stamp) more than that after it: the grace covers records flushed into a file opened
just after they were received, and a wall clock stepping back a little. Past that stop a
journal is still read to its end for its ``gap`` markers alone (``docs/replay.md``, "Gap
markers past --at"): a gap covering ``until_us`` can be journaled any time later (a
``reconnect`` gap once the exchange takes a connection again, an ``outage`` gap at the
next start), so no delay bounds them. Only lines holding ``"gap"`` or ``"connect"`` (the
labels of the connections the markers name) are decoded there, and only the ``gap``
markers are yielded; a capture has no markers and stops there.
"""

from __future__ import annotations

import bz2
import calendar
import itertools
import logging
import lzma
import re
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import attrs
import orjson
import zstandard
from attrs import define, evolve, field, frozen

from kalshi.config import S3Config
from kalshi.errors import JournalError
from kalshi.journal import JournalProblem, JournalRecord
from kalshi.journal.files import file_sort_key
from kalshi.journal.format import Labels, decode_line
from kalshi.journal.reader import Chunk, FileLines, s3_objects, split_runs, zstd_chunks
from kalshi.replay.capture import (
    CaptureFormat,
    CaptureLine,
    decode_capture_line,
    detect,
    exchange_time_us,
    is_journal_line,
    split_time_prefix,
    to_us,
)

__all__ = [
    "CAPTURE_GATHERER",
    "SEQ_CHECKS",
    "STOP_GRACE_US",
    "SeqCheck",
    "SourceOptions",
    "decompressed",
    "read_records",
    "source_files",
]

SeqCheck = Literal["auto", "contiguous", "filtered"]
SEQ_CHECKS: tuple[SeqCheck, ...] = ("auto", "contiguous", "filtered")
CAPTURE_GATHERER = "capture"
STOP_GRACE_US = 10_000_000  # records this late after `until_us` end decoding (gap markers read on)
STDIN = "-"
_CHUNK = 1 << 20
_log = logging.getLogger("kalshi.replay.source")
_DECIDE_FRAMES = 1000  # frames of a session looked at to choose the sequence rule
_FILTERED_SHARE = 10  # percent of seq steps that skip numbers above which: filtered
_FILTERED_STEPS = 20  # fewer seq steps cannot tell a loss from a filtered capture
REORDER_FRAMES = 64  # a frame this many frames late (or less) is put back in seq order
LATE_LISTED = 10  # frames too late for the window, located one by one; the rest counted
_REORDERED = {"reordered": True}  # detail of a frame put back in seq order
# A marker's ``kind`` as JSON: in a frame line a quote inside the frame is escaped, so
# these bytes are in a line only as a member's value or name (decoded to tell which).
_GAP = b'"gap"'
_CONNECT = b'"connect"'
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_XZ = b"\xfd7zXZ\x00"
_BZIP2 = b"BZh"  # and the block size, a digit
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark: dropped at the start of a capture
_UNDECIDED = 10  # lines read without one that is JSON: the file is refused whole


@frozen
class SourceOptions:
    """How to read: the capture format the user gave (fields left ``None`` are detected),
    the sequence rule, and the receive time (µs) past which a point-in-time read stops."""

    fmt: CaptureFormat = field(factory=CaptureFormat)
    seq_check: SeqCheck = "auto"
    until_us: int | None = None


def source_files(paths: Iterable[str | Path]) -> list[str]:
    """Expand directories (recursively) into the files to read, whatever their names (each
    is read by its content, as a file given by name): journal segments in time order
    (``file_sort_key``), other files by path. Hidden files (a name, or a folder below the
    directory given, starting with ``.``: the journal's ``.lock``, editors' sidecars) are
    left out. ``-`` is stdin. Raises :class:`JournalError` for a path that does not exist
    and for a directory holding no file to read (``docs/replay.md``, "Sources")."""
    out: list[str] = []
    for item in paths:
        name = str(item)
        if name == STDIN:
            out.append(name)
            continue
        path = Path(name)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))]
            if not found:
                raise JournalError(f"{path}: no file to read in this directory{_left_out(path)}")
            out.extend(str(p) for p in sorted(found, key=file_sort_key))
        elif path.is_file():
            out.append(name)
        else:
            raise JournalError(f"{path}: no such file or directory")
    return out


def _hidden(relative: Path) -> bool:
    """A hidden file, or one in a hidden folder (``relative`` to the directory given)."""
    return any(part.startswith(".") for part in relative.parts)


def _left_out(path: Path) -> str:
    """What a directory with no file to read holds: its hidden files, if any."""
    hidden = sum(1 for p in path.rglob("*") if p.is_file())
    return f" ({hidden:,} hidden file(s) left out)" if hidden else " (empty)"


def read_records(
    paths: Iterable[str | Path],
    options: SourceOptions | None = None,
    *,
    s3: S3Config | None = None,
) -> Iterator[JournalRecord | JournalProblem]:
    """Records and problems of every source, in order (see the module docstring).

    Damaged lines (bad JSON, a capture line without its frame or time, a torn compressed
    tail) become :class:`JournalProblem` with file and line, and reading goes on. Raises
    :class:`JournalError` (eagerly) for a path that does not exist."""
    opts = options or SourceOptions()
    names = [str(p) for p in paths]
    local = source_files([n for n in names if not n.startswith("s3://")])
    remote = [n for n in names if n.startswith("s3://")]

    def generate() -> Iterator[Sequence[JournalRecord | JournalProblem]]:
        labels: Labels = {}
        capture = _Capture(opts.seq_check)
        carry: list[JournalProblem | bytes] = []  # a capture file's torn last line, its problem

        def one(name: str, path: str | None = None) -> Iterator[Sequence[Any]]:
            late = False  # opened past the stop: read for its gap markers alone
            if opts.until_us is not None and name != STDIN:
                stamp = _journal_stamp_us(Path(name))
                late = stamp is not None and stamp > opts.until_us + STOP_GRACE_US
            return _read_one(name, opts, labels, capture, carry, late=late, path=path)

        for name in local:
            yield from one(name)
        for url in remote:  # read as local files are, each problem naming its s3:// key
            with tempfile.TemporaryDirectory(prefix="kalshi-replay-") as tmp:
                for key, path in s3_objects(url, Path(tmp), s3):
                    yield from one(key, str(path))
        if carry:
            yield [carry[0]]  # type: ignore[list-item]
        yield capture.finish()

    # the items of each list, taken in C: no generator resumed a record
    return itertools.chain.from_iterable(generate())


def _journal_stamp_us(path: Path) -> int | None:
    """When a journal segment was opened (from its name), in µs; None for other names."""
    stamp = file_sort_key(path)[0]
    if not stamp:
        return None
    return calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%S")) * 1_000_000


# --- bytes -> lines -------------------------------------------------------------------------


def _raw_chunks(fh: BinaryIO) -> Iterator[bytes]:
    while data := fh.read(_CHUNK):
        yield data


def decompressed(fh: BinaryIO, torn: list[str]) -> Iterator[Chunk]:
    """The bytes of a plain, gzip, zstd, xz or bzip2 stream (told by its first bytes), in chunks,
    each with whether it is known intact (:data:`kalshi.journal.reader.Chunk`: a zstd
    frame whose checksum matched); concatenated members/frames are read on; a torn or
    corrupt tail ends the stream with a reason appended to ``torn``."""
    chunks = _raw_chunks(fh)
    first = next(chunks, b"")
    stream = itertools.chain([first], chunks)
    if first.startswith(_GZIP):
        inflated = _inflate(stream, torn, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), "gzip")
        return ((chunk, False) for chunk in inflated)
    if first.startswith(_ZSTD):
        # a damaged frame costs that frame only: read on from the next one
        return zstd_chunks(b"".join(stream), torn)
    if first.startswith(_XZ):
        inflated = _inflate(stream, torn, lzma.LZMADecompressor, "xz")
        return ((chunk, False) for chunk in inflated)
    if first.startswith(_BZIP2) and first[3:4].isdigit():
        inflated = _inflate(stream, torn, bz2.BZ2Decompressor, "bzip2")
        return ((chunk, False) for chunk in inflated)
    return ((chunk, False) for chunk in stream if chunk)


def _inflate(chunks: Iterator[bytes], torn: list[str], make: Any, kind: str) -> Iterator[bytes]:
    obj = make()
    in_member = False
    for data in chunks:
        while data:
            try:
                out = obj.decompress(data)
            except (zlib.error, zstandard.ZstdError, lzma.LZMAError, OSError) as exc:
                # (bz2 says OSError: "Invalid data stream")
                torn.append(f"corrupt {kind} data: {exc}")
                return
            in_member = True
            if out:
                yield out
            if obj.eof:
                data = obj.unused_data
                obj = make()
                in_member = False
            else:
                data = b""
    if in_member:
        unit = {"zstd": "frame", "gzip": "member"}.get(kind, "stream")
        torn.append(f"torn {kind} tail (incomplete last {unit})")


# --- one file ---------------------------------------------------------------------------------


class _Refused(Exception):
    """The file's shape cannot be read (ambiguous fields, a JSON array): one error for
    the file, every line of it from here on counted as not read."""


def _decide(line: bytes, given: CaptureFormat, name: str) -> CaptureFormat | bool | str:
    """What one line says of its file: ``True`` our journal, a :class:`CaptureFormat`, or
    a reason the line says nothing (not JSON: a torn line; detection never decides on
    it, the next line is tried). Raises :class:`_Refused` for a shape that cannot be read
    (file ``name``)."""
    array = (
        "a JSON array, not JSON lines (one frame per line): convert it with "
        f"jq -c '.[]' {name} > {Path(name).stem}.jsonl"
    )
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if b"\x00" in line:
            raise _Refused(
                "binary content (a NUL byte), not JSON lines: not a journal or capture, or"
                " compressed in a way not read here (gzip, zstd, xz and bzip2 are)"
            ) from None
        if _array_start(line):
            raise _Refused(array) from None
        prefixed = _time_prefixed(line, given)
        if prefixed is not None:
            return prefixed
        return f"invalid JSON: {exc}"
    if isinstance(obj, list) and _array_start(line):
        raise _Refused(array)
    if is_journal_line(obj):
        return True
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    try:
        return detect(obj, given)
    except ValueError as exc:
        raise _Refused(str(exc)) from None


def _array_start(line: bytes) -> bool:
    """The first line of a JSON array of frames: ``[``, ``[{...},`` or a whole array."""
    text = line.strip()
    if not text.startswith(b"["):
        return False
    if text == b"[":
        return True
    for candidate in (text, text[1:].rstrip(b",]").strip()):
        try:
            if isinstance(orjson.loads(candidate), list | dict):
                return True
        except orjson.JSONDecodeError:
            continue
    return False


def _time_prefixed(line: bytes, given: CaptureFormat) -> CaptureFormat | None:
    """The format of a ``<receive time> <frame>`` line (``capture.split_time_prefix``),
    or ``None`` when the line is not one."""
    split = split_time_prefix(line)
    if split is None:
        return None
    try:
        to_us(split[0], given.time_unit, "receive time")
        rest = orjson.loads(split[1])
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(rest, dict):
        return None
    try:
        return detect(rest, evolve(given, time_prefix=True))
    except ValueError as exc:
        raise _Refused(str(exc)) from None


_EPOCH = re.compile(r"([0-9]+)(?:\.[0-9]+)?")


def _torn_time_prefix(
    line: bytes, shape: CaptureFormat, given: CaptureFormat, following: Line | None
) -> str | None:
    """Why the line that would decide a capture's shape is the torn end of a
    ``<receive time> <frame>`` line (a file cut inside the digits of its first time, or
    at the space before the frame), judged against the next line: ``None`` when they
    agree, or there is no complete next line to judge by. Cut inside the digits, the
    time still reads as a time (``01540025``: 1 540 025 s) with fewer digits than the
    next line's, and would be replayed with a wrong receive time."""
    if following is None or not following[1] or not following[0].strip():
        return None
    after = following[0]
    try:
        later = _decide(after, given, "")
    except _Refused:
        return None
    if not isinstance(later, CaptureFormat) or not later.time_prefix:
        return None
    if not shape.time_prefix:
        return "torn first line: no receive time ahead of its frame, as the next line has"
    ours, theirs = split_time_prefix(line), split_time_prefix(after)
    assert ours is not None and theirs is not None  # both read as time-prefixed
    mine, next_ = _EPOCH.fullmatch(ours[0]), _EPOCH.fullmatch(theirs[0])
    if mine is None or next_ is None or len(mine[1]) >= len(next_[1]):
        return None
    return (
        f"torn first line: its receive time {ours[0]} has {len(mine[1])} digits before any"
        f" point, the next line's {theirs[0]} {len(next_[1])} (cut inside the time)"
    )


Line = tuple[bytes, bool, bool]
"""A line of a file, whether it ended with a newline, whether its chunk was verified
(:func:`kalshi.journal.reader.split_runs`)."""


class _Lines:
    """A file's lines one at a time from :func:`~kalshi.journal.reader.split_runs`' runs,
    with one of look-ahead (:meth:`peek`, for the shape decision) and the lines not yet
    read as runs again (:meth:`rest`, for a journal's lines decoded a list at a time)."""

    def __init__(self, runs: Iterator[tuple[list[bytes], bool, bool]]) -> None:
        self._runs = runs
        self._run: list[bytes] = []
        self._at = 0  # the next line of the current run
        self._complete = self._verified = False
        self._next: list[Line] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> Line:
        if self._next:
            return self._next.pop()
        while self._at >= len(self._run):
            self._run, self._complete, self._verified = next(self._runs)
            self._at = 0
        line = self._run[self._at]
        self._at += 1
        return line, self._complete, self._verified

    def peek(self) -> Line | None:
        if not self._next:
            try:
                self._next.append(next(self))
            except StopIteration:
                return None
        return self._next[0]

    def rest(self) -> Iterator[tuple[list[bytes], bool, bool]]:
        """The lines not read yet, as runs (a line peeked at is a run of its own)."""
        if self._next:
            line, complete, verified = self._next.pop()
            yield [line], complete, verified
        if self._at < len(self._run):
            run, self._run = self._run[self._at :], []
            yield run, self._complete, self._verified
        yield from self._runs


def _read_one(
    name: str,
    opts: SourceOptions,
    labels: Labels,
    capture: _Capture,
    carry: list[JournalProblem | bytes] | None = None,
    *,
    late: bool = False,
    path: str | None = None,
) -> Iterator[Sequence[JournalRecord | JournalProblem]]:
    """One file's records, a list at a time (read from ``path``, named ``name``: an S3
    object's key, downloaded to a temporary file). ``carry``: a capture split mid-line into
    files read together (``docs/replay.md``, "Sessions"): the previous file's torn last
    line (its problem and bytes), joined to this file's first line when the two make one
    line. ``late``: the file is past the stop (``until_us``) from its start: a journal's
    ``gap`` markers only. A journal read to its end (no ``until_us``) has its lines after
    the first decoded by :class:`~kalshi.journal.reader.FileLines`, as
    :func:`~kalshi.journal.read_journal` does: the same records and problems."""
    carry = [] if carry is None else carry
    torn: list[str] = []
    line_no = 0
    until = None if opts.until_us is None else opts.until_us + STOP_GRACE_US
    journal: bool | None = None  # decided by the first line that says (never a torn one)
    fmt = opts.fmt
    blank: list[int] = []  # blank lines before the file's kind is known (a journal: damage)
    skipped = 0  # blank lines of a capture: skipped, not damage
    undecided = 0  # lines read, none of them JSON
    try:
        with _open(path or name) as fh:
            lines = _Lines(split_runs(decompressed(fh, torn)))
            for line, complete, verified in lines:
                line_no += 1
                if late and journal:  # past the stop: the fast path of a line
                    if _GAP in line or _CONNECT in line:  # else no marker: not decoded
                        yield list(_late_marker(name, line_no, line, labels, verified))
                    continue
                if carry:
                    held, head = carry[0], carry[1]
                    carry.clear()
                    assert isinstance(held, JournalProblem) and isinstance(head, bytes)
                    if _one_object(head + line):
                        line = head + line
                    else:
                        yield [held]
                if line_no == 1 and line.startswith(_BOM) and not line[len(_BOM) :].strip():
                    line = b""  # a byte order mark alone: a blank line
                if not line.strip():
                    if complete and not late:
                        if journal is None:
                            blank.append(line_no)
                        elif journal:
                            yield [JournalProblem(name, line_no, "empty line")]
                        else:
                            skipped += 1
                    continue
                if journal is None:
                    try:
                        if line_no == 1 and line.startswith(_BOM):
                            shape = _decide(line[len(_BOM) :], opts.fmt, name)
                            if isinstance(shape, CaptureFormat):
                                line = line[len(_BOM) :]  # a capture's BOM: dropped
                        else:
                            shape = _decide(line, opts.fmt, name)
                        if isinstance(shape, str) and complete:
                            undecided += 1
                            if undecided >= _UNDECIDED:
                                raise _Refused(
                                    f"not JSON lines: {undecided} lines read, none of them"
                                    f" JSON (the last: {shape})"
                                )
                    except _Refused as exc:
                        refused_at = line_no
                        line_no += sum(1 for _ in lines)
                        count = line_no - refused_at + 1
                        yield [JournalProblem(name, at, "empty line") for at in blank]
                        blank.clear()
                        yield [
                            JournalProblem(
                                name,
                                refused_at,
                                f"not a capture: {exc}; {count:,} line(s) of the file not read",
                                count,
                            )
                        ]
                        break
                    if isinstance(shape, str):
                        if not complete:
                            shape = f"torn last line ({len(line)} bytes, no newline)"
                        # blank lines ahead of a damaged one: damage too, in line order
                        yield [JournalProblem(name, at, "empty line") for at in blank]
                        blank.clear()
                        yield [JournalProblem(name, line_no, shape)]
                        continue
                    if isinstance(shape, CaptureFormat):
                        cut = _torn_time_prefix(line, shape, opts.fmt, lines.peek())
                        if cut is not None:  # the next line decides the shape
                            yield [JournalProblem(name, line_no, cut)]
                            continue
                    journal = shape is True
                    if journal:  # blank lines before a journal's first line: damage
                        yield [JournalProblem(name, at, "empty line") for at in blank]
                    else:
                        skipped += len(blank)
                    if isinstance(shape, CaptureFormat):
                        fmt = shape
                        yield capture.describe(name, fmt)
                if late:
                    if not journal:
                        return  # a capture past the stop: nothing more of it is read
                    yield list(_late_marker(name, line_no, line, labels, verified))
                    continue
                try:
                    if journal:
                        record = decode_line(line, labels, verified=verified)
                        if until is not None and record.kind == "frame" and record.wall_us > until:
                            late = True  # the stop: from here on, the gap markers alone
                            continue
                        yield [record]
                        if until is None:  # the rest a list at a time
                            rest = FileLines(name, labels, line_no)
                            try:
                                yield from rest.decode(lines.rest())
                            finally:
                                line_no = rest.line_no
                            break
                        continue
                    decoded, frame = decode_capture_line(line, fmt)
                except ValueError as exc:
                    reason = str(exc)
                    if not complete:
                        reason = f"torn last line ({len(line)} bytes, no newline)"
                        if not journal and not torn:  # the next file may hold its rest
                            carry[:] = [JournalProblem(name, line_no, reason), line]
                            continue
                    yield [JournalProblem(name, line_no, reason)]
                    continue
                if until is not None and decoded.recv_us is not None and decoded.recv_us > until:
                    return
                yield capture.feed(decoded, frame, f"{name}:{line_no}")
    except OSError as exc:
        yield [JournalProblem(name, line_no, f"cannot read: {exc.strerror or exc}")]
        return
    if journal is None:  # blank lines alone: nothing to tell them by, so damage
        yield [JournalProblem(name, at, "empty line") for at in blank]
    if skipped:
        _log.warning("%s: %d blank line(s) skipped (a capture: no frame, no damage)", name, skipped)
    yield [JournalProblem(name, line_no + 1, reason) for reason in torn]


def _late_marker(
    name: str, line_no: int, line: bytes, labels: Labels, verified: bool
) -> Iterator[JournalRecord | JournalProblem]:
    """A journal line past the stop: its record if it is a ``gap`` marker (a ``connect``
    marker only records its label in ``labels``), its problem if damaged."""
    if _GAP not in line and _CONNECT not in line:
        return
    try:
        record = decode_line(line, labels, verified=verified)
    except ValueError as exc:
        yield JournalProblem(name, line_no, str(exc))
        return
    if record.kind == "gap":
        yield record


def _one_object(line: bytes) -> bool:
    """Whether ``line`` is one JSON object (a torn line's two halves joined)."""
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _open(name: str) -> Any:
    if name == STDIN:
        return _Borrowed(sys.stdin.buffer)
    return open(name, "rb")  # closed by the caller's with


class _Borrowed:
    """stdin in a ``with``: not closed on exit."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def __enter__(self) -> BinaryIO:
        return self.fh

    def __exit__(self, *exc: object) -> None:
        return None


# --- capture frames -> sessions ---------------------------------------------------------------


@define(eq=False)
class _Part:
    """The frames of one session read from one file: one connection's identity
    (``conn_id`` from the file's own frames, ``frame_no`` counted within it), whatever was
    read before the file (``docs/replay.md``, "Identity of a capture's rows")."""

    first_raw: bytes  # the part's first frame as read: the tiebreak of its conn_id
    first_us: int | None = None  # the receive (else exchange) time of its first timed frame
    last_us: int | None = None  # the time given to its last frame emitted
    conn_id: int | None = None  # set when its first frame is emitted
    frame_no: int = 0


@define
class _Pending:
    line: CaptureLine
    frame: Any
    sid: int | None
    seq: int | None
    source: str  # file:line
    reordered: bool = False  # put back in seq order
    part: _Part | None = None  # the file's session part it was read in


@define
class _Session:
    sources: list[str]
    last_seq: dict[int, int] = field(factory=dict)  # highest seq read, per sid
    low_seq: dict[int, int] = field(factory=dict)  # lowest seq read, per sid: the start
    released: dict[int, int] = field(factory=dict)  # seq of the last frame let out, per sid
    held: deque[_Pending] = field(factory=deque)  # the reorder window, seq order per sid
    pending: list[_Pending] = field(factory=list)
    conn_id: int | None = None  # the connection of its last part emitted (None: none yet)
    last_part: _Part | None = None  # that part
    mode: tuple[str, str] | None = None  # its sequence rule and why (decided at its start)


class _Capture:
    """Capture frames -> records: sessions, times and the sequence rule (module docstring)."""

    def __init__(self, seq_check: SeqCheck) -> None:
        self.seq_check = seq_check
        self.session = _Session([])
        self.part: _Part | None = None  # the part frames read now go to (None: a new one)
        self.time_source = ""
        self.source = ""
        self.reordered = 0  # frames put back in seq order (within the window)
        self.late = 0  # frames too late for the window
        self.problems: list[JournalProblem] = []  # the first of them, located

    def describe(self, name: str, fmt: CaptureFormat) -> list[JournalRecord]:
        """A capture file starts (its frames follow). The session goes on across files
        (``docs/replay.md``, "Captures"): how a capture was cut into files changes nothing;
        a ``seq`` back below the session's start ends it."""
        out: list[JournalRecord] = []
        self.source = name
        self.part = None  # a new file: a new connection for the session's frames
        frame = "bare frames" if fmt.frame_field is None else f"frame in {fmt.frame_field!r}"
        if fmt.time_prefix:
            unit = fmt.time_unit or "unit by size"
            when = f"received_at from the time ahead of each line ({unit})"
        elif fmt.time_field is None:
            when = "no receive time: received_at = the exchange time (msg.ts_ms, msg.ts), "
            when += "else the previous frame's"
        else:
            when = f"received_at from {fmt.time_field!r} ({fmt.time_unit or 'unit by size'})"
        self.time_source = f"{frame}; {when}"
        return out

    def feed(self, line: CaptureLine, frame: Any, source: str = "") -> list[Any]:
        """One capture line (read from ``source``, ``file:line``) -> the records due, and a
        :class:`JournalProblem` for a frame too late to be put back in order."""
        sid = seq = None
        if isinstance(frame, dict):
            sid, seq = frame.get("sid"), frame.get("seq")
            if not isinstance(sid, int) or not isinstance(seq, int):
                sid = seq = None
        out: list[Any] = []
        session = self.session
        item = _Pending(line, frame, sid, seq, source)
        if sid is not None and seq is not None:
            top = session.last_seq.get(sid)
            low = session.low_seq.get(sid)
            if (
                low is not None
                and seq < low
                and sid not in session.released
                and low - seq <= REORDER_FRAMES
            ):
                # A small step down at the session's very start (the sid's first frames read
                # swapped; none has left the window): put back like any late frame, the
                # session now begins there. A restart starts again further down (seq 1
                # after more than the window) or after frames have left the window.
                session.low_seq[sid] = seq
                self._attach(item)
                self._put_back(session, item)
                return out
            if top is not None and (
                seq < session.low_seq[sid] or seq <= session.released.get(sid, -1) < top
            ):
                if seq < session.low_seq[sid]:
                    # Below where this session began on the sid: a new connection's
                    # subscription (kalshi-api.md 2.4: after a reconnect all sids are new
                    # and seq starts again).
                    reason = f"seq restart: sid {sid} seq {seq} after {top}"
                elif self.part is None:
                    # A file's first frame going back on its sid: the files read together
                    # are not one session in the order given; a new session from here,
                    # not a problem (each file's rows have their own identity anyway).
                    reason = f"seq back at a file's start: sid {sid} seq {seq} after {top}"
                else:
                    # Neither a restart nor within the window: the capture mixes connections
                    # (or lost its order). Said, and a new session from here: every frame is
                    # still read, no book is trusted across the break.
                    self._late(source, f"sid {sid} seq {seq} after {top}")
                    reason = f"seq out of order: sid {sid} seq {seq} after {top}"
                out.extend(self.problems)
                self.problems.clear()
                out.extend(self._close(reason))
                session = self.session
                top = None
            if top is None:
                session.last_seq[sid] = session.low_seq[sid] = seq
            elif seq >= top:
                session.last_seq[sid] = seq
            else:
                # A little out of order: put back in seq order within the window.
                self._attach(item)
                self._put_back(session, item)
                return out
        self._attach(item)
        if not session.sources or session.sources[-1] != self.source:
            session.sources.append(self.source)
        session.held.append(item)
        if len(session.held) > REORDER_FRAMES:
            out.extend(self._release(session, len(session.held) - REORDER_FRAMES))
        return out

    def _attach(self, item: _Pending) -> None:
        """``item`` joins the part being read (a new one at a file's or session's start)."""
        part = self.part
        if part is None:
            part = self.part = _Part(item.line.raw)
        if part.first_us is None:
            part.first_us = _time_of(item)
        item.part = part

    def _late(self, source: str, what: str) -> None:
        """A frame too late for the reorder window: located (the first
        :data:`LATE_LISTED`), else counted (:meth:`finish` says how many more)."""
        self.late += 1
        if self.late <= LATE_LISTED:
            where, _, line_no = source.rpartition(":")
            self.problems.append(
                JournalProblem(
                    where or self.source,
                    int(line_no) if line_no.isdigit() else 0,
                    f"seq out of order beyond the reorder window ({REORDER_FRAMES} frames): "
                    f"{what}; a new session from here (does the file mix connections?)",
                    lines=0,  # read on, not lost
                )
            )

    def _put_back(self, session: _Session, item: _Pending) -> None:
        """``item`` before the first held frame of its sid with a higher seq."""
        held = session.held
        at = next(
            (
                i
                for i, other in enumerate(held)
                if other.sid == item.sid and other.seq is not None and other.seq > item.seq  # type: ignore[operator]
            ),
            len(held),
        )
        held.insert(at, attrs.evolve(item, reordered=True))
        self.reordered += 1

    def _release(self, session: _Session, count: int | None = None) -> list[JournalRecord]:
        """The first ``count`` held frames (all: ``None``) go on to be emitted."""
        held, released, pending = session.held, session.released, session.pending
        for _ in range(len(held) if count is None else count):
            item = held.popleft()
            seq = item.seq
            # a frame read on too late does not lower the mark
            if seq is not None and item.sid is not None and seq > released.get(item.sid, -1):
                released[item.sid] = seq
            pending.append(item)
        if session.conn_id is not None or len(session.pending) >= _DECIDE_FRAMES:
            return self._flush()
        return []

    def finish(self) -> list[Any]:
        """At the end of the read: what is still buffered (no disconnect: the capture
        ends), and how many more frames than were listed came too late to reorder."""
        out: list[Any] = self._release(self.session)
        out.extend(self._flush())
        if self.late > LATE_LISTED:
            out.append(
                JournalProblem(
                    self.source,
                    0,
                    f"{self.late - LATE_LISTED:,} more frame(s) of seq out of order beyond "
                    f"the reorder window ({REORDER_FRAMES} frames), not listed",
                    lines=0,
                )
            )
        return out

    def _close(self, reason: str) -> list[JournalRecord]:
        out = self._release(self.session)
        out.extend(self._flush())
        old = self.session
        self.session = _Session([])
        self.part = None  # the next session's frames: a new connection
        if old.conn_id is None or old.last_part is None:
            return out
        wall = old.last_part.last_us or 0
        out.append(
            JournalRecord(
                CAPTURE_GATHERER,
                old.conn_id,
                old.last_part.frame_no + 1,
                "local",
                wall,
                wall,
                "disconnect",
                detail={"reason": reason},
            )
        )
        return out

    def _flush(self) -> list[JournalRecord]:
        session = self.session
        pending, session.pending = session.pending, []
        if not pending:
            return []
        out: list[JournalRecord] = []
        if session.mode is None:
            session.mode = self._decide(pending)
        for item in pending:
            part = item.part
            assert part is not None  # every item read is attached (feed)
            conn_id = part.conn_id
            if conn_id is None:
                out.append(self._connect(session, part))
                conn_id = part.conn_id
                assert conn_id is not None
            wall = _time_of(item)
            if wall is None:
                wall = part.last_us if part.last_us is not None else part.first_us or 0
            part.last_us = wall
            part.frame_no += 1
            out.append(
                JournalRecord(
                    CAPTURE_GATHERER,
                    conn_id,
                    part.frame_no,
                    "in",
                    wall,
                    wall,
                    "frame",
                    item.line.raw,
                    detail=_REORDERED if item.reordered else {},
                    label="capture",
                    source=item.source,
                )
            )
        return out

    def _connect(self, session: _Session, part: _Part) -> JournalRecord:
        """The ``connect`` marker of a part's connection: ``conn_id`` = the receive time
        (µs) of its first timed frame plus a tiebreak under 1 s from that frame's bytes
        (CRC-32 mod 10^6), so two files opened in one millisecond are two connections;
        nothing read before the part counts. ``continues`` names the
        session's previous part (another file read before it: books and ``seq`` go on)."""
        first = part.first_us or 0
        conn_id = part.conn_id = first + zlib.crc32(part.first_raw) % 1_000_000
        assert session.mode is not None
        mode, why = session.mode
        detail: dict[str, Any] = {
            "label": "capture",
            "url": session.sources[0] if session.sources else "",
            "channels": [],
            "seq_check": mode,
            "seq_check_reason": why,
            "time": self.time_source,
        }
        if session.conn_id is not None:
            detail["continues"] = session.conn_id
        session.conn_id, session.last_part = conn_id, part
        return JournalRecord(
            CAPTURE_GATHERER, conn_id, 0, "local", first, first, "connect", detail=detail
        )

    def _decide(self, pending: list[_Pending]) -> tuple[str, str]:
        if self.seq_check != "auto":
            return self.seq_check, "chosen (--seq-check)"
        last: dict[int, int] = {}
        steps = skips = 0
        for item in pending:
            if item.sid is None or item.seq is None:
                continue
            before = last.get(item.sid)
            if before is not None and item.seq > before:
                steps += 1
                skips += item.seq != before + 1
            last[item.sid] = item.seq
        share = f"{skips:,} of {steps:,} seq steps in the first {len(pending):,} frames"
        share += " skip numbers"
        if skips and steps < _FILTERED_STEPS:
            # Too few steps to tell a loss from a filtered capture (a 5-line excerpt of a
            # filtered capture wrote 2 false seq_gap rows, issue F10b): no skip is a loss.
            return "filtered", f"auto: {share} (too few steps to take a skip for a loss)"
        if skips * 100 > steps * _FILTERED_SHARE:
            return "filtered", f"auto: {share} (a filtered capture)"
        return "contiguous", f"auto: {share}"


def _time_of(item: _Pending) -> int | None:
    """A capture frame's time: its receive time, else the exchange's (``msg.ts_ms``,
    ``msg.ts``), else ``None``."""
    wall = item.line.recv_us
    return exchange_time_us(item.frame) if wall is None else wall
