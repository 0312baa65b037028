"""``JournalWriter``: synchronous, buffered appends from the event loop; a Trio flush task."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from kalshi.clock import WallClock, system_wall_us
from kalshi.config import JournalConfig, S3Config
from kalshi.errors import ExportError, JournalError
from kalshi.journal import metrics
from kalshi.journal.files import SegmentSet, file_sort_key
from kalshi.journal.format import MARKER_KINDS, encode_frame, encode_marker, encode_rest
from kalshi.retry import Backoff

__all__ = ["JournalWriter"]

log = logging.getLogger("kalshi.journal")

_RETRY_MAX = 5.0  # seconds between attempts at a refusing disk, at most
UPLOAD_WORKERS = 4  # journal files uploaded at once
UPLOAD_RETRY_FIRST = 30.0  # seconds before a file whose attempts all failed is tried again
UPLOAD_RETRY_MAX = 600.0


class JournalWriter:
    """Append-only raw journal of one gatherer.

    ``record_frame`` / ``record_marker`` are synchronous and cheap: they encode one line and
    append it to an in-memory buffer. :meth:`run` writes the buffer to disk in a worker
    thread every ``flush_interval`` seconds, or sooner once ``flush_bytes`` are buffered.

    Backpressure: the bytes in memory (buffered, plus the batch being written) are bounded
    by ``max_buffer_bytes``; a record is never dropped. Past the bound :attr:`pressure` is
    true, every appended record is counted (``pressure_records``,
    ``kalshi_journal_pressure_records``), and readers ``await`` :meth:`room` before taking
    another frame from their socket, so TCP pushes back on the exchange. Memory stays below
    the bound plus one frame per reader (the frame each had already received).

    ``wall_us`` (the injected wall clock, µs since the epoch) decides file names and hourly
    rotation; frame timestamps are the caller's. ``run_sync`` runs the blocking disk work
    (a worker thread by default; tests pass an inline runner to keep virtual time exact).
    """

    def __init__(
        self,
        cfg: JournalConfig,
        gatherer_id: str,
        wall_us: WallClock = system_wall_us,
        *,
        s3: S3Config | None = None,
        flush_interval: float = 0.2,
        flush_bytes: int = 1 << 20,
        max_buffer_bytes: int = 64 << 20,
        grace: float = 10.0,
        run_sync: Callable[..., Awaitable[Any]] = trio.to_thread.run_sync,
        upload_attempts: int = 8,
    ) -> None:
        self.cfg = cfg
        self.gatherer_id = gatherer_id
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.grace = grace
        self._run_sync = run_sync
        self.upload_attempts = upload_attempts
        self.s3 = s3 if (cfg.upload and s3 is not None and s3.enabled) else None
        self._segments = SegmentSet(
            Path(cfg.dir),
            gatherer_id,
            rotate_bytes=int(cfg.rotate_bytes),
            rotate_interval=float(cfg.rotate_interval),
            compress=cfg.compress,
        )
        self._wall_us = wall_us
        self._flush_lock = trio.Lock()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._writing = 0  # bytes of the batch being written (still in memory)
        self._room = trio.Event()
        self._room.set()
        self.waiting = 0  # readers paused in room() now
        self.pauses = 0  # times a reader paused
        self.peak_bytes = 0  # the most bytes ever held in memory
        self._wake = trio.Event()
        self._last_frame: dict[int, int] = {}
        self._closed = False
        self.records = 0  # appended
        self.records_written = 0
        self.bytes_written = 0
        self.files_closed: list[Path] = []
        self.pressure_records = 0
        self.files_uploaded = 0
        self.upload_gave_up: list[Path] = []
        self._upload_progress = _Pulse()  # after every upload outcome
        self._flush_progress = _Pulse()  # after every outcome of the run loop's flush
        self._written = _Pulse()  # after every flush written, a refusal, and the close
        self._stopped = False  # the run task has ended: nothing more will be written
        self._holders = 0  # producers inside held(): the close waits for their last records
        self._released = _Pulse()  # after every held() left
        self._upload_send, self._upload_recv = trio.open_memory_channel[Path](math.inf)
        self._upload_pending: set[Path] = set()
        self._upload_delay: dict[Path, Backoff] = {}
        self.disk_ok = True
        self.disk_error = ""
        self.write_errors = 0
        # Records (and their bytes) the disk refused at shutdown: in no journal file; the
        # final line of the run says so (:attr:`unwritten_error` why); 0 after a clean close.
        self.unwritten_records = 0
        self.unwritten_bytes = 0
        self.unwritten_error = ""
        metrics.track(self)

    # --- the event-loop side -----------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Journal bytes in memory: buffered and being written."""
        return self._buffered + self._writing

    @property
    def pressure(self) -> bool:
        """True while the bytes in memory are over ``max_buffer_bytes`` (the disk lags)."""
        return self._buffered + self._writing > self.max_buffer_bytes

    async def room(self) -> None:
        """Return at once below the bound; else wait until a flush brings the bytes in
        memory back under it (a reader calls this before receiving its next frame)."""
        if not self.pressure:
            return
        self.waiting += 1
        self.pauses += 1
        metrics.READS_PAUSED.inc()
        try:
            while self.pressure:
                if self._room.is_set():
                    self._room = trio.Event()
                await self._room.wait()
        finally:
            self.waiting -= 1

    def _relieved(self) -> None:
        if not self.pressure:
            self._room.set()

    @property
    def current_path(self) -> Path | None:
        return self._segments.current_path

    def _append(self, line: bytes) -> None:
        if self._closed:
            raise RuntimeError("journal writer is closed")
        self._buffer.append(line)
        buffered = self._buffered = self._buffered + len(line)
        self.records += 1
        held = buffered + self._writing
        if held > self.peak_bytes:
            self.peak_bytes = held
        if held > self.max_buffer_bytes:
            self.pressure_records += 1
            metrics.PRESSURE.inc()
        if buffered >= self.flush_bytes:
            self._wake.set()

    def record_frame(
        self,
        conn_id: int,
        frame_no: int,
        direction: str,
        wall_us: int,
        mono_us: int,
        raw: bytes | str,
    ) -> None:
        """Journal one frame received (``"in"``) or sent (``"out"``), byte-exact."""
        if direction == "in":
            self._last_frame[conn_id] = frame_no
        elif direction != "out":
            raise ValueError(f"direction must be 'in' or 'out', got {direction!r}")
        self._append(
            encode_frame(self.gatherer_id, conn_id, frame_no, direction, wall_us, mono_us, raw)
        )

    def record_marker(
        self, conn_id: int, kind: str, wall_us: int, mono_us: int, **detail: Any
    ) -> None:
        """Journal an in-band marker (connect, subscribe, disconnect, resnapshot, gap,
        forget).

        Its ``frame_no`` is the last received frame number on ``conn_id`` (0 before any).
        """
        if kind not in MARKER_KINDS:
            raise ValueError(
                f"unknown marker kind {kind!r}; expected one of {sorted(MARKER_KINDS)}"
            )
        frame_no = self._last_frame.get(conn_id, 0)
        if kind == "disconnect":
            self._last_frame.pop(conn_id, None)
        self._append(
            encode_marker(self.gatherer_id, conn_id, frame_no, kind, wall_us, mono_us, detail)
        )

    def record_rest(self, wall_us: int, mono_us: int, body: bytes, **detail: Any) -> None:
        """Journal a REST answer whose rows the gatherer stores: ``body`` as received, and
        ``detail`` (its ``path``, ``params``, what was left out) to make them again."""
        self._append(encode_rest(self.gatherer_id, wall_us, mono_us, body, detail))

    @property
    def closed(self) -> bool:
        """True once the final flush has closed the files: a record appended now raises."""
        return self._closed

    @contextmanager
    def held(self) -> Iterator[None]:
        """While a producer is inside, the writer's close (its :meth:`run` cancelled: the
        gatherer stopping) waits for it, shielded, at most ``grace`` seconds, before the
        final flush: the records a producer makes while it stops (a connection's frames
        read ahead and its ``disconnect`` marker, the gatherer's gap ends) go into the
        file, not after its close. The final flush then has ``grace`` of its own; a disk
        that refuses it is handled as ever (counted, said, never blocking the stop)."""
        self._holders += 1
        try:
            yield
        finally:
            self._holders -= 1
            self._released.fire()

    async def on_disk(self) -> None:
        """Return once every record appended so far is written to its file (handed to the
        operating system: a ``kill -9`` of this process keeps it), asking for a flush now
        rather than after ``flush_interval``. Returns at once while the disk refuses writes
        (``disk_ok`` false: the database path goes on, docs/journal.md) and once the writer
        is closed. The store awaits it before a batch reaches the database or the spool, so
        a row is never stored ahead of the frame it came from (``Store.follow``)."""
        mark = self.records
        while self.records_written < mark and self.disk_ok and not self._stopped:
            self._wake.set()
            await self._written.wait()

    # --- the flush task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush the buffer to disk until cancelled; never returns normally.

        On cancellation it first waits for the producers inside :meth:`held` (shielded, at
        most ``grace`` seconds); then everything recorded is written and the current file
        is closed, under a shielded deadline of ``grace`` seconds. A disk that refuses a write
        (full, read-only) never stops it: the records stay buffered, :attr:`disk_ok` is
        false (``kalshi_journal_disk_ok`` 0, one log line), and the flush is retried with
        backoff until the disk takes them. Raises :class:`~kalshi.errors.JournalError`
        before starting when ``<dir>/<gatherer_id>/`` cannot be created or is held by
        another live process with the same gatherer id.
        """
        await self._run_sync(self._segments.claim)
        try:
            async with trio.open_nursery() as nursery:
                if self.s3 is not None:
                    nursery.start_soon(self._uploads, self.s3)
                task_status.started()
                backoff = Backoff(min(self.flush_interval, _RETRY_MAX), _RETRY_MAX)
                while True:
                    with trio.move_on_after(self.flush_interval):
                        await self._wake.wait()
                    try:
                        await self.flush()
                    except JournalError as exc:
                        self._refused(exc)
                        self._flush_progress.fire()
                        await trio.sleep(backoff.next())
                        continue
                    backoff.reset()
                    if not self.disk_ok:
                        log.info(
                            "journal disk writable again; %d records caught up",
                            self.records_written,
                        )
                        self.disk_ok, self.disk_error = True, ""
                        metrics.DISK_OK.set(1)
                    self._flush_progress.fire()
        finally:
            with trio.move_on_after(self.grace, shield=True):
                while self._holders:  # producers still making their last records
                    await self._released.wait()
            if self._holders:
                log.warning(
                    "journal: %d producer(s) still stopping after %gs; closing without"
                    " their last records",
                    self._holders,
                    self.grace,
                )
            with trio.move_on_after(self.grace, shield=True):
                async with self._flush_lock:
                    try:
                        await self._flush()
                        closed = await self._run_sync(self._segments.close)
                    except JournalError as exc:
                        # the stop goes on (the database path flushes); what stays in
                        # memory is counted and said, never dropped silently
                        self._refused(exc)
                        closed = []
                        self.unwritten_error = str(exc)
                self._closed_files(closed)
                self._closed = True
            self.unwritten_records, self.unwritten_bytes = len(self._buffer), self._buffered
            if self.unwritten_records:
                log.error(
                    "journal: %d records (%d bytes) not written at shutdown: %s",
                    self.unwritten_records,
                    self.unwritten_bytes,
                    self.unwritten_error or "the shutdown grace ran out",
                )
            self._stopped = True
            self._written.fire()
            self._segments.release()

    def _refused(self, exc: JournalError) -> None:
        self.write_errors += 1
        metrics.WRITE_ERRORS.inc()
        if self.disk_ok:
            log.error(
                "journal disk refuses writes, records stay in memory and are retried "
                "(the database path goes on): %s",
                exc,
            )
        self.disk_ok, self.disk_error = False, str(exc)
        metrics.DISK_OK.set(0)
        self._written.fire()

    async def flush(self) -> None:
        """Write everything buffered so far (and rotate if due); one flush at a time."""
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        self._wake = trio.Event()
        now = self._wall_us() / 1e6
        if not self._buffer:
            closed = await self._run_sync(self._segments.tick, now)
            self._closed_files(closed)
            return
        batch, size = self._buffer, self._buffered
        self._buffer, self._buffered = [], 0
        self._writing = size
        started = time.perf_counter()
        try:
            closed = await self._run_sync(self._segments.write_lines, batch, now)
        except BaseException:
            # Put the batch back in front so a retry (or the final flush) writes it. Lines
            # of it written before a failure may be written twice; never lost.
            self._buffer[:0] = batch
            self._buffered += size
            raise
        finally:
            self._writing = 0
        self._relieved()
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.BYTES_WRITTEN.inc(size)
        metrics.RECORDS.inc(len(batch))
        self.bytes_written += size
        self.records_written += len(batch)
        self._written.fire()
        self._closed_files(closed)

    def _closed_files(self, closed: list[Path]) -> None:
        if not closed:
            return
        metrics.FILES_ROTATED.inc(len(closed))
        self.files_closed.extend(closed)
        if self.s3 is not None:
            for path in closed:
                self._queue_upload(path)

    # --- uploads ------------------------------------------------------------------------

    @property
    def upload_backlog(self) -> int:
        """Closed files not uploaded yet: queued, uploading, or waiting to be retried."""
        return len(self._upload_pending)

    def _ledger(self) -> Path:
        return Path(self.cfg.dir) / self.gatherer_id / ".uploaded"

    def _left_behind(self) -> list[Path]:
        """Journal files of this gatherer that no run uploaded (blocking: a thread)."""
        folder = Path(self.cfg.dir) / self.gatherer_id
        try:
            done = set(self._ledger().read_text().split("\n"))
        except FileNotFoundError:
            done = set()
        root = Path(self.cfg.dir)
        found = [
            p
            for p in folder.rglob("*")
            if p.is_file()
            and p.name.endswith((".jsonl", ".jsonl.zst"))
            and p.relative_to(root).as_posix() not in done
        ]
        return sorted(found, key=file_sort_key)

    def _record_uploaded(self, path: Path) -> None:
        with self._ledger().open("a") as ledger:
            ledger.write(path.relative_to(Path(self.cfg.dir)).as_posix() + "\n")

    def _queue_upload(self, path: Path) -> None:
        if path in self._upload_pending:
            return
        self._upload_pending.add(path)
        self._upload_send.send_nowait(path)
        metrics.UPLOAD_BACKLOG.set(len(self._upload_pending))

    async def _uploads(self, s3: S3Config) -> None:
        """Upload every closed file: those earlier runs left behind first, then each file as
        it closes, :data:`UPLOAD_WORKERS` at a time. A file whose attempts all fail is
        queued again after a delay (:class:`~kalshi.retry.Backoff`, doubling to
        :data:`UPLOAD_RETRY_MAX`): an outage or a wrong secret delays uploads, never loses
        them; the next run picks up the rest."""
        for path in await trio.to_thread.run_sync(self._left_behind):
            if path != self.current_path:
                self._queue_upload(path)
        if self._upload_pending:
            log.info(
                "journal: %d files left behind by earlier runs to upload", len(self._upload_pending)
            )
        async with trio.open_nursery() as nursery:
            for _ in range(UPLOAD_WORKERS):
                nursery.start_soon(self._upload_worker, s3, nursery)

    async def _upload_worker(self, s3: S3Config, nursery: trio.Nursery) -> None:
        from kalshi.journal.upload import upload_with_retry

        root = Path(self.cfg.dir)
        async for path in self._upload_recv:
            try:
                await upload_with_retry(s3, path, root, attempts=self.upload_attempts)
            except ExportError as exc:
                log.warning("journal upload failed, retrying later: %s", exc)
                self.upload_gave_up.append(path)
                later = self._upload_delay.setdefault(
                    path, Backoff(UPLOAD_RETRY_FIRST, UPLOAD_RETRY_MAX)
                )
                delay = later.next()
                nursery.start_soon(self._retry_upload_later, path, delay)
                self._upload_done()
                continue
            await trio.to_thread.run_sync(self._record_uploaded, path)
            self._upload_delay.pop(path, None)
            self._upload_pending.discard(path)
            metrics.UPLOAD_BACKLOG.set(len(self._upload_pending))
            self.files_uploaded += 1
            self._upload_done()

    async def upload_progress(self) -> None:
        """Return after the next upload outcome: a file uploaded (``files_uploaded``) or its
        attempts used up (``upload_gave_up``). Callers loop on their own condition."""
        await self._upload_progress.wait()

    async def flush_progress(self) -> None:
        """Return after the next outcome of the run loop's flush: written (``disk_ok``) or
        refused by the disk (``write_errors``). Callers loop on their own condition."""
        await self._flush_progress.wait()

    def _upload_done(self) -> None:
        self._upload_progress.fire()

    async def _retry_upload_later(self, path: Path, delay: float) -> None:
        await trio.sleep(delay)
        self._upload_send.send_nowait(path)


class _Pulse:
    """Wakes every task waiting at the time of each :meth:`fire` (an event set, then
    replaced for the next waiters)."""

    def __init__(self) -> None:
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()
