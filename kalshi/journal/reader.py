"""Read journal files back: files, directories, ``s3://bucket/prefix``; tolerant of damage."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import zstandard
from attrs import frozen

from kalshi.config import S3Config
from kalshi.errors import JournalError
from kalshi.journal.files import file_sort_key
from kalshi.journal.format import (
    JournalProblem,
    JournalRecord,
    Labels,
    decode_line,
    decode_verified,
)

__all__ = [
    "Chunk",
    "ConnectionInfo",
    "FileLines",
    "connections",
    "journal_files",
    "read_journal",
    "s3_objects",
    "split_lines",
    "split_runs",
    "zstd_chunks",
]

_CHUNK = 1 << 20
_SUFFIXES = (".jsonl", ".jsonl.zst")


@frozen
class ConnectionInfo:
    """What the ``connect`` marker said about a connection."""

    gatherer_id: str
    conn_id: int
    label: str
    channels: tuple[str, ...]
    url: str
    wall_us: int


def _is_journal(path: Path) -> bool:
    return path.name.endswith(_SUFFIXES)


def journal_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories (recursively, in time order) into journal files."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and _is_journal(p)]
            out.extend(sorted(found, key=file_sort_key))
        elif path.is_file():
            out.append(path)
        else:
            raise JournalError(f"{path}: no such journal file or directory")
    return out


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


Chunk = tuple[bytes, bool] | None
"""A piece of a file's content and whether it is known intact (``verified``: a zstd
frame whose content checksum matched), or ``None``: a damaged run ends here."""

# A verified frame's content is held until the frame ends (its checksum is read last); a
# frame larger than this (a file recompressed as one frame) is passed on unverified.
_HOLD_BYTES = 1 << 26


def _zstd_chunks(fh: BinaryIO, torn: list[str]) -> Iterator[Chunk]:
    return zstd_chunks(fh.read(), torn)


def zstd_chunks(data: bytes, torn: list[str]) -> Iterator[Chunk]:
    """Decompress concatenated zstd frames. A frame that carries zstd's content checksum
    (XXH64; the journal writer's frames do) comes out whole once the checksum matched,
    ``verified``: its lines are as written, and their own CRC need not be computed again.
    A frame that fails (corrupt data, the checksum) yields what it produced before the
    failure, unverified, then ``None`` (its partial last line is damaged), a reason naming
    the byte offset goes to ``torn``, and reading resumes at the next frame's magic number;
    a partial last frame yields what it holds, unverified."""
    dctx = zstandard.ZstdDecompressor()
    pos = 0
    while pos < len(data):
        obj = dctx.decompressobj()
        fed = pos
        try:
            checked = zstandard.get_frame_parameters(data[pos : pos + 18]).has_checksum
        except zstandard.ZstdError:
            checked = False  # not a frame header: decompress() says why
        held: list[bytes] = []
        size = 0
        try:
            while not obj.eof and fed < len(data):
                chunk = data[fed : fed + _CHUNK]
                fed += len(chunk)
                out = obj.decompress(chunk)
                if not out:
                    continue
                if checked and size + len(out) <= _HOLD_BYTES:
                    held.append(out)
                    size += len(out)
                    continue
                if held:
                    yield b"".join(held), False
                    held = []
                checked = False
                yield out, False
        except zstandard.ZstdError as exc:
            if held:
                yield b"".join(held), False
            torn.append(f"corrupt zstd frame at byte {pos}: {exc}; skipped to the next frame")
            yield None
            found = data.find(_ZSTD_MAGIC, pos + 1)
            if found < 0:
                return
            pos = found
            continue
        if not obj.eof:
            if held:
                yield b"".join(held), False
            torn.append("torn zstd tail (incomplete last frame)")
            return
        if held:
            yield b"".join(held), checked
        pos = fed - len(obj.unused_data)


def _plain_chunks(fh: BinaryIO, torn: list[str]) -> Iterator[Chunk]:
    while data := fh.read(_CHUNK):
        yield data, False


def split_runs(chunks: Iterator[Chunk]) -> Iterator[tuple[list[bytes], bool, bool]]:
    """(lines without their newlines, each had a newline, verified) of a file read in
    ``chunks``, a chunk's lines at a time; ``None`` in ``chunks`` ends a damaged run (its
    partial line comes out alone, without a newline), as does the file's end. A chunk's
    lines are verified when it is and no line runs into it from the one before (a journal
    frame ends at a line's end)."""
    rest = b""
    for item in chunks:
        if item is None:
            if rest:
                yield [rest], False, False
            rest = b""
            continue
        chunk, verified = item
        if rest:  # a line across chunks: the chunk's lines are not taken as verified
            parts = (rest + chunk).split(b"\n")
            verified = False
        else:
            parts = chunk.split(b"\n")
        rest = parts.pop()
        yield parts, True, verified
    if rest:
        yield [rest], False, False


def split_lines(chunks: Iterator[Chunk]) -> Iterator[tuple[bytes, bool, bool]]:
    """(line without newline, had a newline, verified) of a file read in ``chunks``, one
    line at a time (:func:`split_runs`). Used for captures (:mod:`kalshi.replay.source`)."""
    for lines, complete, verified in split_runs(chunks):
        for line in lines:
            yield line, complete, verified


_SLICE = 1024  # lines of a verified chunk decoded together (a list of records at a time)


class FileLines:
    """The lines of one journal file (``name``) to records and problems, a list at a time
    (:meth:`decode`); :attr:`line_no` is the number of the last line read (a problem after
    the lines, a torn tail or a failed read, is placed by it). Lines already read by the
    caller are counted by starting at ``line_no``."""

    def __init__(self, name: str, labels: Labels, line_no: int = 0) -> None:
        self.name = name
        self.labels = labels
        self.line_no = line_no

    def decode(
        self, runs: Iterable[tuple[list[bytes], bool, bool]]
    ) -> Iterator[Sequence[JournalRecord | JournalProblem]]:
        """The records and problems of :func:`split_runs`' ``runs``: the common frame lines
        of a verified chunk by :func:`decode_verified`, a slice at a time; any other line,
        or a slice holding one, by :func:`decode_line` (an empty line, a damaged one and a
        torn last one as problems)."""
        labels = self.labels
        for parts, complete, verified in runs:
            if not (complete and verified):  # a damaged run's partial line, a plain file's
                yield self._lines(parts, complete, verified)
                continue
            for at in range(0, len(parts), _SLICE):
                lines = parts[at : at + _SLICE]
                records = decode_verified(lines, labels)
                if records is None:
                    yield self._lines(lines, True, True)
                else:
                    self.line_no += len(records)
                    yield records

    def _lines(
        self, lines: list[bytes], complete: bool, verified: bool
    ) -> list[JournalRecord | JournalProblem]:
        """Lines one by one (:func:`decode_line`)."""
        name, labels, line_no = self.name, self.labels, self.line_no
        out: list[JournalRecord | JournalProblem] = []
        for line in lines:
            line_no += 1
            if not line or line.isspace():  # (no stripped copy of every line)
                if complete:
                    out.append(JournalProblem(name, line_no, "empty line"))
                continue
            try:
                record = decode_line(line, labels, verified=verified)
            except ValueError as exc:
                if complete:
                    out.append(JournalProblem(name, line_no, str(exc)))
                else:
                    reason = f"torn last line ({len(line)} bytes, no newline)"
                    out.append(JournalProblem(name, line_no, reason))
                continue
            out.append(record)
        self.line_no = line_no
        return out


def _read_file(
    path: Path, labels: Labels, name: str | None = None
) -> Iterator[Sequence[JournalRecord | JournalProblem]]:
    """The records and problems of one file, a list at a time (:class:`FileLines`);
    problems name ``name`` (an S3 object's ``s3://`` key), else ``path``."""
    torn: list[str] = []
    lines = FileLines(name or str(path), labels)
    try:
        with open(path, "rb") as fh:
            chunks = (
                _zstd_chunks(fh, torn) if path.name.endswith(".zst") else _plain_chunks(fh, torn)
            )
            yield from lines.decode(split_runs(chunks))
    except OSError as exc:
        yield [JournalProblem(lines.name, lines.line_no, f"cannot read: {exc.strerror or exc}")]
        return
    yield [JournalProblem(lines.name, lines.line_no + 1, reason) for reason in torn]


def read_journal(
    paths: Iterable[str | Path], *, s3: S3Config | None = None
) -> Iterator[JournalRecord | JournalProblem]:
    """Records and problems of journal files, directories or ``s3://bucket/prefix`` sources.

    Directories are read recursively in time order (file stamp, then sequence number). A
    torn last line and a torn zstd tail become a :class:`JournalProblem` at the end of
    their file; corrupt lines in the middle are reported with their line number and
    reading goes on. Raises :class:`JournalError` for a path that does not exist.
    """
    local: list[str | Path] = []
    remote: list[str] = []
    for item in paths:
        if str(item).startswith("s3://"):
            remote.append(str(item))
        else:
            local.append(item)

    def generate() -> Iterator[Sequence[JournalRecord | JournalProblem]]:
        labels: Labels = {}  # label and channels of each connection, from connect markers
        for path in journal_files(local):
            yield from _read_file(path, labels)
        for url in remote:
            with tempfile.TemporaryDirectory(prefix="kalshi-journal-") as tmp:
                for key, path in s3_objects(url, Path(tmp), s3, journals_only=True):
                    yield from _read_file(path, labels, key)

    # the items of each list, taken in C: no generator resumed a record
    return itertools.chain.from_iterable(generate())


def connections(
    source: Iterable[str | Path] | Iterable[JournalRecord | JournalProblem],
    *,
    s3: S3Config | None = None,
) -> dict[tuple[str, int], ConnectionInfo]:
    """The latest connect-marker info per (gatherer_id, conn_id).

    ``source`` is either journal paths (read with :func:`read_journal`) or items already read.
    """
    given = list(source)
    items: Iterable[Any] = given
    if given and not isinstance(given[0], JournalRecord | JournalProblem):
        items = read_journal([p for p in given if isinstance(p, str | Path)], s3=s3)
    out: dict[tuple[str, int], ConnectionInfo] = {}
    for item in items:
        if isinstance(item, JournalRecord) and item.kind == "connect":
            out[(item.gatherer_id, item.conn_id)] = ConnectionInfo(
                gatherer_id=item.gatherer_id,
                conn_id=item.conn_id,
                label=str(item.detail.get("label", "")),
                channels=tuple(str(c) for c in item.detail.get("channels", ()) or ()),
                url=str(item.detail.get("url", "")),
                wall_us=item.wall_us,
            )
    return out


def s3_objects(
    url: str, target: Path, s3: S3Config | None, *, journals_only: bool = False
) -> list[tuple[str, Path]]:
    """Download the objects under ``s3://bucket/prefix`` into ``target``: a list of
    (``s3://bucket/key``, local file), journal segments in time order, other objects by
    key. Left out: hidden objects (a name, or a folder below the prefix's folder,
    starting with ``.``) and, with ``journals_only``, objects not named as journal segments
    (``.jsonl``, ``.jsonl.zst``). Raises :class:`JournalError` when the listing or a
    download fails, and when the prefix holds no object to read (naming the prefix)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from kalshi.s3 import s3_client

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    client = s3_client(s3 or S3Config(enabled=True))
    folder = prefix.rpartition("/")[0]  # ``captures/gold/.h`` names ``.hidden`` hidden
    out: list[tuple[str, Path]] = []
    left_out = 0
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                below = key[len(folder) :].lstrip("/")  # the name within the folder
                if (
                    not below
                    or key.endswith("/")
                    or any(part.startswith(".") for part in below.split("/"))
                    or (journals_only and not key.endswith(_SUFFIXES))
                ):
                    left_out += 1
                    continue
                dest = target / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(dest))
                out.append((f"s3://{bucket}/{key}", dest))
    except (BotoCoreError, ClientError) as exc:
        raise JournalError(f"cannot read {url}: {exc}") from exc
    if not out:
        what = "journal file" if journals_only else "object"
        held = f"{left_out:,} left out (hidden" if left_out else "nothing"
        if left_out:
            held += ", or not named as journal segments)" if journals_only else ")"
        raise JournalError(f"{url}: no {what} to read under this prefix ({held})")
    return sorted(out, key=lambda item: file_sort_key(Path(item[0].removeprefix("s3://"))))
