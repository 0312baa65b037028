"""Journal files on disk: naming, one open segment, rotation. Blocking; run in a thread."""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import os
import re
import time
from pathlib import Path
from typing import IO, BinaryIO

import zstandard

from kalshi.errors import JournalError

__all__ = ["SegmentSet", "file_sort_key", "file_stamp", "segment_name"]

_NAME = re.compile(r"^(?P<gid>.+)-(?P<ts>\d{8}T\d{6})-(?P<n>\d+)\.jsonl(?:\.zst)?$")
ZSTD_LEVEL = 3


def segment_name(gatherer_id: str, opened: float, n: int, compress: bool) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(opened))
    return f"{gatherer_id}-{stamp}-{n}.jsonl" + (".zst" if compress else "")


def file_sort_key(path: Path) -> tuple[str, int, str, str]:
    """Time order of journal files: stamp, then sequence number (numeric), then gatherer."""
    match = _NAME.match(path.name)
    if match is None:
        return ("", 0, "", str(path))
    return (match["ts"], int(match["n"]), match["gid"], str(path))


def file_stamp(path: Path) -> int | None:
    """The second (since the epoch, UTC) a journal file was opened, from its name;
    ``None`` for a name not ours."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    return calendar.timegm(time.strptime(match["ts"], "%Y%m%dT%H%M%S"))


class _Segment:
    def __init__(self, path: Path, compress: bool) -> None:
        self.path = path
        self.size = 0  # uncompressed line bytes
        self._dirty = False
        self._fh: BinaryIO = open(path, "xb")  # noqa: SIM115  # closed in close()
        self._zw: zstandard.ZstdCompressionWriter | None = None
        if compress:
            # write_checksum: each frame carries zstd's own XXH64 of its content
            self._zw = zstandard.ZstdCompressor(
                level=ZSTD_LEVEL, write_checksum=True
            ).stream_writer(self._fh, closefd=False)

    def write(self, data: bytes) -> None:
        if self._zw is not None:
            self._zw.write(data)
        else:
            self._fh.write(data)
        self.size += len(data)
        self._dirty = True

    def flush(self) -> None:
        if self._zw is not None and self._dirty:
            # A complete zstd frame per flush: a crash loses at most what came after.
            self._zw.flush(zstandard.FLUSH_FRAME)
        self._dirty = False
        self._fh.flush()

    def close(self) -> None:
        # Every write was followed by a complete frame: nothing is left in the compressor,
        # so the writer is dropped rather than closed (closing would add an empty frame).
        self.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


class SegmentSet:
    """The current file of one gatherer's journal; rotates by size and at interval edges.

    ``now`` (wall seconds since the epoch) is passed in by the caller, which reads its
    injected clock on the event loop. Every method blocks on disk I/O: run it in a thread.
    """

    def __init__(
        self,
        root: Path,
        gatherer_id: str,
        *,
        rotate_bytes: int,
        rotate_interval: float,
        compress: bool,
    ) -> None:
        self.root = root
        self.gatherer_id = gatherer_id
        self.rotate_bytes = max(1, rotate_bytes)
        self.rotate_interval = rotate_interval
        self.compress = compress
        self._current: _Segment | None = None
        self._deadline = 0.0
        self._n = 0
        self._lock: IO[bytes] | None = None
        self._abandoned: list[Path] = []  # files given up after a write error

    def claim(self) -> None:
        """Create ``<root>/<gatherer_id>/`` and lock it for this process (released by
        :meth:`close` or at exit). Raises :class:`JournalError` naming the directory when it
        cannot be created or another live process with the same gatherer id holds it."""
        if self._lock is not None:
            return
        folder = self.root / self.gatherer_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = (folder / ".lock").open("ab")
        except OSError as exc:
            raise JournalError(
                f"{folder}: cannot use the journal directory: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise JournalError(
                f"{folder}: journal in use by another process with gatherer_id {self.gatherer_id!r}"
            ) from None
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def current_path(self) -> Path | None:
        return None if self._current is None else self._current.path

    def _open(self, now: float) -> _Segment:
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        folder = self.root / self.gatherer_id / day
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            self._n += 1
            path = folder / segment_name(self.gatherer_id, now, self._n, self.compress)
            try:
                segment = _Segment(path, self.compress)
            except FileExistsError:
                continue
            break
        if self.rotate_interval > 0:
            self._deadline = (now // self.rotate_interval + 1) * self.rotate_interval
        else:
            self._deadline = float("inf")
        return segment

    def _close(self, closed: list[Path]) -> None:
        if self._current is not None:
            self._current.close()
            closed.append(self._current.path)
            self._current = None

    def _abandon(self) -> None:
        """Give up the current file after a failed write: its compressor may hold half a
        frame. Readers see its tail as torn; the next write opens a new file. A file the
        disk took no byte of is removed (a full disk refuses the first write of each new
        file: one empty file a retry otherwise); the refused lines stay buffered and are
        written again whole (JournalWriter)."""
        if self._current is None:
            return
        segment, self._current = self._current, None
        with contextlib.suppress(OSError):
            segment._fh.close()
        with contextlib.suppress(OSError):
            if segment.path.stat().st_size == 0:
                segment.path.unlink()
                return
        self._abandoned.append(segment.path)

    def write_lines(self, lines: list[bytes], now: float) -> list[Path]:
        """Append ``lines``, rotating as needed; returns the files closed meanwhile.

        Raises :class:`JournalError` when the disk refuses; the current file is then given
        up (a new one is opened by the next write) and reported closed by the next call."""
        closed, self._abandoned = self._abandoned, []
        try:
            if self._current is not None and now >= self._deadline:
                self._close(closed)
            chunk: list[bytes] = []
            pending = 0
            for line in lines:
                if self._current is None:
                    self._current = self._open(now)
                size = self._current.size + pending
                if size > 0 and size + len(line) > self.rotate_bytes:
                    self._current.write(b"".join(chunk))
                    chunk, pending = [], 0
                    self._close(closed)
                    self._current = self._open(now)
                chunk.append(line)
                pending += len(line)
            if chunk and self._current is not None:
                self._current.write(b"".join(chunk))
            if self._current is not None:
                self._current.flush()
        except OSError as exc:
            self._abandoned.extend(closed)
            self._abandon()
            raise JournalError(f"cannot write journal under {self.root}: {exc}") from exc
        return closed

    def tick(self, now: float) -> list[Path]:
        """Close the current file if its interval has ended (nothing to write)."""
        closed: list[Path] = []
        if self._current is not None and now >= self._deadline:
            try:
                self._close(closed)
            except OSError as exc:
                raise JournalError(f"cannot close journal file: {exc}") from exc
        return closed

    def close(self) -> list[Path]:
        closed: list[Path] = []
        try:
            self._close(closed)
        except OSError as exc:
            raise JournalError(f"cannot close journal file: {exc}") from exc
        return closed
