"""The batch writers: one Trio task pair per table, never losing a row.

Per table, a *collector* task reads the table's bounded channel and seals batches at
``batch_size`` rows or ``flush_interval`` after a batch's first row, whichever comes
first. A sealed batch waits in memory while the rows in memory, all tables together, stay
within ``spool.memory_rows``; beyond that it is spilled to the on-disk spool. A *flusher* task
writes batches lowest sequence number first (memory or spool), retrying with backoff while
the database is unavailable. A spooled batch is written as soon as the database takes it,
whatever put it on disk (an outage, the memory bound, a batch larger than the bound).
Sequence numbers continue those already in the spool, so a new process drains an earlier
one's spool first.

Database writes run in worker threads (sync psycopg) admitted by the connection pool's
limiter; the event loop never blocks on the database.

Acknowledgements, not timers: every row handed to a :class:`RowSender` gets a number (per
table, increasing) from the moment its send starts; a batch remembers the first number it
holds. A table is *committed through* ``n`` when no row numbered ``n`` or lower is still in
a channel, an open batch, a sealed batch or the spool, i.e. the database acknowledged it.
:meth:`Store.committed` waits for that; :meth:`Store.complete_before` (the ingest watermark)
is the oldest time among the rows not yet committed, with no slack for rows in channels
(they are counted from the moment they are handed over).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import trio
from attrs import frozen

from kalshi.clock import WallClock, system_wall_us
from kalshi.config import StoreConfig, WriterConfig
from kalshi.errors import DatabaseUnavailable, StoreError
from kalshi.models.rows import Row
from kalshi.retry import Backoff
from kalshi.store import metrics
from kalshi.store.connection import translating
from kalshi.store.deadletter import DeadLetters
from kalshi.store.insert import WriteResult, write_rows
from kalshi.store.owner import claim_gatherer_id
from kalshi.store.pool import ConnectionPool
from kalshi.store.schema import TABLES, TableSpec
from kalshi.store.spool import Batch, Spool, claim_spool, database_identity, lock_directory

__all__ = ["RowSender", "Store", "StoreStats", "TableStats", "open_store"]

log = logging.getLogger("kalshi.store")

_BACKOFF_START = 0.1
_BACKOFF_MAX = 5.0
_WORKERS = 2  # concurrent batch writes per table
_WATERMARK_EVERY = 1.0  # seconds
_SPOOL_RETRY = 1.0  # seconds between attempts at a refusing spool disk
_WATERMARK_SQL = (
    "INSERT INTO ingest_watermark (gatherer_id, complete_before, updated_at)"
    " VALUES (%s, %s, %s) ON CONFLICT (gatherer_id) DO UPDATE"
    " SET complete_before = EXCLUDED.complete_before, updated_at = EXCLUDED.updated_at"
)

_FIRST_WATERMARK_SQL = (
    "INSERT INTO ingest_watermark (gatherer_id, complete_before, updated_at)"
    " VALUES (%s, %s, %s) ON CONFLICT (gatherer_id) DO NOTHING"
)


@frozen
class TableStats:
    queue_rows: int  # rows in memory: channel buffer, open batch, sealed batches
    rows_written: int  # rows new to the table since the store opened
    rows_duplicate: int  # rows whose key was already stored (markets: not newer, or same)
    rows_updated: int  # markets: stored rows replaced by a newer version
    batches: int  # batches committed
    spool_rows: int
    spool_bytes: int
    spool_files: int
    dead_letters: int


@frozen
class StoreStats:
    # the last database operation succeeded (True) or found it unavailable (False); None
    # before the first one (unknown, which is not up: /health says 'unknown')
    db_up: bool | None
    db_error: str  # the last unavailability error, '' when up
    tables: Mapping[str, TableStats]
    spool_ok: bool = True  # the last spool write succeeded
    spool_error: str = ""  # why the spool disk refused the last batch, '' when ok
    # the tables whose writer takes no rows (database and spool disk both refuse, and the
    # rows in memory, all tables together, are past twice spool.memory_rows), by name
    paused: tuple[str, ...] = ()
    memory_rows: int = 0  # rows in sealed batches in memory, all tables together


class _SpoolState:
    """Whether the spool disk takes batches; a refusal degrades, never drops."""

    def __init__(self) -> None:
        self.ok = True
        self.error = ""
        self.paused: set[str] = set()  # tables whose collector waits for room
        # Rows in sealed batches in memory, all tables together: spool.memory_rows bounds
        # this sum (the memory budget, docs/scaling.md), each table spilling its own.
        self.memory_rows = 0
        # set (and replaced) when rows leave memory (committed or spilled) or the database
        # is found unavailable: what Store.room_for waits on
        self.freed = trio.Event()

    def wake(self) -> None:
        self.freed.set()
        self.freed = trio.Event()

    def mark_ok(self) -> None:
        if not self.ok:
            log.info("spool disk writable again")
        self.ok, self.error = True, ""
        metrics.SPOOL_OK.set(1)

    def mark_failed(self, exc: BaseException) -> None:
        if self.ok:
            log.error("spool disk refuses batches, keeping them in memory and retrying: %s", exc)
        self.ok, self.error = False, str(exc)
        metrics.SPOOL_OK.set(0)


class _DbState:
    """Whether the database takes this store's operations: the one source of /health's
    ``db``, ``kalshi_store_db_up`` and ``kalshi status``. ``up`` is None (unknown, the
    gauge 0) until the first operation answers."""

    def __init__(
        self,
        prepare: Callable[[], object] | None = None,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        self.up: bool | None = None
        self.error = ""
        self._on_down = on_down  # called whenever a database operation finds it unavailable
        metrics.DB_UP.set(0)
        # Run once before the first write (the schema's migrations when the database was
        # unreachable at start); raises DatabaseUnavailable while it still is.
        self._prepare = prepare
        self._prepared = threading.Lock()

    def prepare(self) -> None:
        """Blocking (a writer's thread): :attr:`_prepare` once, before any write."""
        if self._prepare is None:
            return
        with self._prepared:
            if self._prepare is not None:
                self._prepare()
                log.info("database prepared (migrations applied) before the first write")
                self._prepare = None

    def mark_up(self) -> None:
        if self.up is False:
            log.info("database available again")
        self.up, self.error = True, ""
        metrics.DB_UP.set(1)

    def mark_down(self, exc: BaseException) -> None:
        if self.up is not False:
            log.warning("database unavailable, batches wait in memory then spool: %s", exc)
        self.up, self.error = False, str(exc)
        metrics.DB_UP.set(0)
        if self._on_down is not None:
            self._on_down()


class _TableWriter:
    def __init__(
        self,
        spec: TableSpec,
        cfg: WriterConfig,
        *,
        pool: ConnectionPool,
        spool: Spool,
        dead: DeadLetters,
        memory_rows: int,
        state: _DbState,
        spool_state: _SpoolState | None = None,
        copy_new: bool = False,
        gate: trio.Event | None = None,
    ) -> None:
        self.spec = spec
        # set once batches may be written (Store.write_first: a previous run's journal tail
        # goes first); None: at once
        self.gate = gate
        self.copy_new = copy_new
        self.batch_size = cfg.batch_size
        self.flush_interval = float(cfg.flush_interval)
        self.pool = pool
        self.spool = spool
        self.dead = dead
        self.memory_limit = memory_rows
        self.state = state
        self.spool_state = spool_state or _SpoolState()
        # The channel: rows handed over and not yet collected, in the order handed, with
        # the lowest number and the oldest time among them; senders append to it without a
        # hop per row (no Trio channel: a row costs an append, the collector takes them all
        # at once). Senders wait while it holds ``capacity`` rows or more (the bound is in
        # rows, whatever the size of the batches handed over).
        self.inbox: list[Row] = []
        self.inbox_first = 0
        self.inbox_oldest = 0
        self.arrived = trio.lowlevel.ParkingLot()  # the collector, waiting for rows
        # rows in the channel that wake the collector: the first row (it starts the flush
        # interval), then as many as fill the open batch; not one wake per loop turn
        self.wake_at = 1
        self.senders = 0  # open RowSenders; the collector ends when none is left
        self.capacity = max(1024, 4 * cfg.batch_size)
        self.room = trio.Event()  # set (and replaced) when a waiting sender may go on
        self.waiting = 0  # senders waiting for room
        self.closed = False  # the collector took its last rows (shutdown)
        self.time_of = _time_of(spec)
        self.next_number = 1  # the number the next handed row gets
        # number of a waiting send's first row -> the oldest time (µs, time_of) of its rows,
        # until they are in the channel (a batch of n rows holds the numbers first .. first
        # + n - 1)
        self.unreceived: dict[int, int] = {}
        self.first: dict[int, int] = {}  # batch seq -> lowest number of its rows (this process)
        self.partial_first = 0  # lowest number among the open batch's rows
        self.partial_oldest = 0  # oldest time among the open batch's rows (when it has any)
        # (index of its first row in the open batch, its oldest time) per take from the
        # channel: a sealed batch's oldest time without measuring the rows again
        self.marks: list[tuple[int, int]] = []
        self.progress = trio.Event()  # set (and replaced) whenever rows are committed
        self.open_rows: list[Row] = []  # the open batch's rows taken from the channel
        # the collector's wait for rows (its deadline: the open batch's flush_interval)
        self.collecting = trio.CancelScope()
        self.seal_due = False  # seal the open batch whole at once (seal_now)
        self.memory: deque[Batch] = deque()
        self._memory_rows = 0
        self.next_seq = 1
        self.work = trio.Event()
        self.loaded: Batch | None = None  # a spooled batch read back, being written
        self.inflight: set[int] = set()  # seqs of memory batches being written
        self.spool_busy = False  # a spooled batch is being written
        self.stop_at = math.inf  # trio time past which a write in flight is abandoned
        self.writing: set[trio.CancelScope] = set()  # the scopes of writes in flight
        # One writer where the order of commits decides what is stored (TableSpec.serial).
        self.workers = 1 if spec.serial else _WORKERS
        # seq -> oldest time (µs, time_of) of a sealed batch made by this process, until
        # committed. Every row's time is taken once, when its send starts, and carried
        # (handed batch -> open batch -> sealed batch) as the minimum of each: the
        # watermark reads a few minima a second instead of every queued row.
        self.oldest: dict[int, int] = {}
        # awaited before a batch of this process reaches the database or the spool: the
        # journal holds its frames by then (Store.follow); None: nothing to wait for
        self.journaled: Callable[[], Awaitable[None]] | None = None
        self.rows_written = 0
        self.rows_duplicate = 0
        self.rows_updated = 0
        self.batches = 0
        self.dead_letters = 0
        self._label = {"table": spec.name}
        metrics.zero_table(spec.name)
        self.send = RowSender(self)  # the writer's own; closed at shutdown

    @property
    def channel_rows(self) -> int:
        """Rows handed over and not yet collected."""
        return len(self.inbox)

    @property
    def partial(self) -> list[Row]:
        """The open batch: its rows taken from the channel, then those still in it (the
        collector takes them once they fill a batch or the flush interval ends)."""
        return self.open_rows + self.inbox

    # --- acknowledgements -------------------------------------------------------------------

    def begin(self, rows: list[Row]) -> tuple[int, int]:
        """Number the rows of a send that may wait (synchronous: nothing can pass in
        between); pending until :meth:`enqueue` or :meth:`abandon`. Returns the first row's
        number and the rows' oldest time (µs). No rows: nothing is numbered (the number is
        the next row's)."""
        number = self.next_number
        if not rows:
            return number, 0
        self.next_number += len(rows)
        time_of = self.time_of
        oldest = time_of(rows[0]) if len(rows) == 1 else min(map(time_of, rows))
        self.unreceived[number] = oldest
        return number, oldest

    def enqueue(self, number: int, rows: list[Row], oldest: int, *, wake: bool = False) -> None:
        """Put the rows of a send begun as ``number`` into the channel; ``wake``: the
        collector takes them now (else once they fill the open batch)."""
        if not rows:
            return
        del self.unreceived[number]
        inbox = self.inbox
        if not inbox:
            self.inbox_first, self.inbox_oldest = number, oldest
        else:
            # lowest, not first: a sender that waited for room was numbered before others
            if number < self.inbox_first:
                self.inbox_first = number
            if oldest < self.inbox_oldest:
                self.inbox_oldest = oldest
        inbox.extend(rows)
        if self.arrived and (wake or len(inbox) >= self.wake_at):
            self.arrived.unpark_all()

    def abandon(self, number: int) -> None:
        """The send of ``number`` did not happen (the channel was full, or it was cancelled).

        May raise what :meth:`committed_through` returns, so waiters are woken."""
        self.unreceived.pop(number, None)
        self._progressed()

    def committed_through(self) -> int:
        """The highest ``n`` such that every row numbered ``n`` or lower was acknowledged by
        the database (or its send abandoned)."""
        firsts = list(self.first.values())
        if self.open_rows:
            firsts.append(self.partial_first)
        if self.inbox:
            firsts.append(self.inbox_first)
        if self.unreceived:
            firsts.append(min(self.unreceived))
        return min(firsts, default=self.next_number) - 1

    async def wait_committed(self, number: int) -> None:
        """Return once the rows numbered up to ``number`` are committed."""
        while self.committed_through() < number:
            await self.progress.wait()

    def _progressed(self) -> None:
        self.progress.set()
        self.progress = trio.Event()

    def _take(self) -> None:
        """Take every row in the channel into the open batch."""
        rows = self.inbox
        if not rows:
            return
        self.inbox = []
        first, oldest = self.inbox_first, self.inbox_oldest
        if not self.open_rows:
            self.open_rows, self.partial_first, self.partial_oldest = rows, first, oldest
            self.marks = [(0, oldest)]
            return
        if first < self.partial_first:
            self.partial_first = first
        if oldest < self.partial_oldest:
            self.partial_oldest = oldest
        self.marks.append((len(self.open_rows), oldest))
        self.open_rows.extend(rows)

    def _wake_senders(self) -> None:
        if self.waiting and self.channel_rows < self.capacity:
            self.room.set()
            self.room = trio.Event()

    async def wait_room(self) -> None:
        """Return once the channel holds fewer than :attr:`capacity` rows (or is closed)."""
        self.waiting += 1
        try:
            while self.channel_rows >= self.capacity and not self.closed:
                await self.room.wait()
        finally:
            self.waiting -= 1

    # --- accounting -----------------------------------------------------------------------

    def queue_rows(self) -> int:
        return self.channel_rows + len(self.open_rows) + self.memory_rows

    def pending_since(self) -> int | None:
        """The oldest receive time (µs) of a row received but not committed, None when
        nothing is pending; 0 for batches spooled by an earlier process (unknown).

        From the minima kept as rows move (:meth:`begin`, :meth:`_take`,
        :meth:`_sealed`): one per handed batch still in the channel, one for the open
        batch, one per sealed batch in memory or in the spool, not one per row."""
        oldest = self.oldest
        times = [oldest.get(seq, 0) for seq in self.spool.seqs()]
        times.extend(oldest[b.seq] for b in self.memory if b.seq in oldest)
        if self.open_rows:
            times.append(self.partial_oldest)
        if self.inbox:
            times.append(self.inbox_oldest)
        if self.unreceived:
            times.append(min(self.unreceived.values()))
        return min(times) if times else None

    def _sealed(self, rows: list[Row], end: int) -> list[Batch]:
        """Seal ``rows[:end]`` (the open batch's rows) into batches of ``batch_size``, each
        with its oldest time in :attr:`oldest`; the open batch keeps ``rows[end:]`` and its
        own oldest time. A batch's oldest time is the least of the takes (:attr:`marks`) it
        holds whole; only the rows of a take cut in two are measured again."""
        size, first, marks = self.batch_size, self.partial_first, self.marks
        bounds = [start for start, _ in marks]
        bounds.append(len(rows))
        batches = []
        for start in range(0, end, size):
            stop = min(start + size, end)
            batch = Batch(self.next_seq, rows[start:stop])
            self.next_seq += 1
            self.first[batch.seq] = first
            self.oldest[batch.seq] = self._oldest_in(rows, bounds, start, stop)
            batches.append(batch)
        if end:
            rest: list[tuple[int, int]] = []
            for k, (start, oldest) in enumerate(marks):
                stop = bounds[k + 1]
                if stop <= end:
                    continue
                if start >= end:
                    rest.append((start - end, oldest))
                else:
                    rest.append((0, min(map(self.time_of, rows[end:stop]))))
            self.marks = rest
            self.open_rows = rows[end:]
            if rest:
                self.partial_oldest = min(oldest for _, oldest in rest)
        return batches

    def _oldest_in(self, rows: list[Row], bounds: list[int], start: int, stop: int) -> int:
        """The oldest time among ``rows[start:stop]``, from :attr:`marks` (``bounds``:
        their starts, then the open batch's length)."""
        found: list[int] = []
        for k, (begin, oldest) in enumerate(self.marks):
            end = bounds[k + 1]
            if end <= start:
                continue
            if begin >= stop:
                break
            if begin >= start and end <= stop:
                found.append(oldest)
            else:
                found.append(min(map(self.time_of, rows[max(begin, start) : min(end, stop)])))
        return min(found)

    def stats(self) -> TableStats:
        return TableStats(
            queue_rows=self.queue_rows(),
            rows_written=self.rows_written,
            rows_duplicate=self.rows_duplicate,
            rows_updated=self.rows_updated,
            batches=self.batches,
            spool_rows=self.spool.rows,
            spool_bytes=self.spool.bytes,
            spool_files=self.spool.files,
            dead_letters=self.dead_letters,
        )

    def _publish(self) -> None:
        metrics.QUEUE_ROWS.labels(**self._label).set(self.queue_rows())
        metrics.SPOOL_ROWS.labels(**self._label).set(self.spool.rows)
        metrics.SPOOL_BYTES.labels(**self._label).set(self.spool.bytes)

    def _account(self, result: WriteResult) -> None:
        self.rows_written += result.inserted
        self.rows_duplicate += result.duplicates
        self.rows_updated += result.updated
        self.dead_letters += result.dead
        self.batches += 1
        metrics.ROWS_WRITTEN.labels(**self._label).inc(result.inserted)
        metrics.ROWS_DUPLICATE.labels(**self._label).inc(result.duplicates)
        metrics.ROWS_UPDATED.labels(**self._label).inc(result.updated)
        metrics.BATCHES.labels(**self._label).inc()
        if result.dead:
            metrics.DEAD_LETTERS.labels(**self._label).inc(result.dead)
            log.warning("%s: %d rows dead-lettered", self.spec.name, result.dead)

    # --- collector ------------------------------------------------------------------------

    async def collect(self) -> None:
        """Read rows into batches until every sender is closed."""
        deadline = math.inf
        while True:
            with trio.move_on_at(-math.inf if self.seal_due else deadline) as self.collecting:
                open_rows = len(self.open_rows)
                self.wake_at = max(1, self.batch_size - open_rows) if open_rows else 1
                while len(self.inbox) < self.wake_at and self.senders:
                    await self.arrived.park()
                if not self.inbox:  # every sender closed, every row taken
                    break
                if not self.open_rows:
                    deadline = trio.current_time() + self.flush_interval
                self._take()
                self._wake_senders()
                if len(self.open_rows) < self.batch_size:
                    continue
            self._take()  # the flush interval passed: the rows still in the channel too
            self._wake_senders()
            # full batches only while rows keep coming; all of it once flush_interval passed
            # or a drain asked for it (seal_now)
            whole = self.seal_due or len(self.open_rows) < self.batch_size
            self.seal_due = False
            await self._seal(whole=whole)
            deadline = trio.current_time() + self.flush_interval if self.open_rows else math.inf
        await self._seal(whole=True)

    def seal_now(self) -> None:
        """Seal the open batch and the rows in the channel now rather than at the end of
        ``flush_interval`` (:meth:`Store.drain`: its caller waits for every row, and no
        batch grows while it waits). Rows handed over afterwards are batched as always."""
        self.seal_due = True
        self.collecting.cancel()

    async def _seal(self, *, whole: bool) -> None:
        """Seal the open batch in batches of ``batch_size`` rows (``whole``: the last,
        shorter one too; else it stays open), in memory or (over the bound) on disk. Each
        sealed batch's first number is the open batch's lowest (a batch handed over whole
        may span several sealed ones). Every batch is in memory before the first wait, so
        a cancellation (shutdown) finds each row in the open batch or a sealed one.

        A spool disk that refuses (full, read-only) leaves the batch in memory, degraded
        and retried; once the rows in memory, all tables together, are past twice
        ``spool.memory_rows`` with the database down too, the collector of every table
        that seals a batch stops taking rows (its channel fills, then its senders wait:
        backpressure reaches the sockets) until either takes some: nothing is dropped.
        """
        rows, size = self.open_rows, self.batch_size
        if not rows:
            return
        end = len(rows) if whole else len(rows) - len(rows) % size
        for batch in self._sealed(rows, end):
            self.memory.append(batch)
            self.memory_rows += len(batch.rows)
        self.work.set()
        await self._spill_over_bound()
        state = self.spool_state
        retry_at = trio.current_time() + _SPOOL_RETRY
        while state.memory_rows > 2 * self.memory_limit and not state.ok:
            if self.spec.name not in self.spool_state.paused:
                log.error(
                    "%s: database and spool disk both refuse rows: %d rows in memory, all "
                    "tables together (%d of this table), past twice spool.memory_rows: this "
                    "table takes no rows until one takes some",
                    self.spec.name,
                    state.memory_rows,
                    self.memory_rows,
                )
                self.spool_state.paused.add(self.spec.name)
            # a commit or a spill of any table frees memory (reading resumes at once); the
            # disk is tried again every _SPOOL_RETRY (a deadline: the wakes of a database
            # found down do not put it off)
            with trio.move_on_at(retry_at):
                await state.freed.wait()
            if trio.current_time() >= retry_at:
                await self._spill_over_bound()
                retry_at = trio.current_time() + _SPOOL_RETRY
        if self.spec.name in self.spool_state.paused:
            self.spool_state.paused.discard(self.spec.name)
            log.info("%s: reading resumed", self.spec.name)
        self._publish()

    @property
    def memory_rows(self) -> int:
        """Rows of this table in sealed batches in memory."""
        return self._memory_rows

    @memory_rows.setter
    def memory_rows(self, rows: int) -> None:
        freed = rows < self._memory_rows
        self.spool_state.memory_rows += rows - self._memory_rows
        self._memory_rows = rows
        if freed:
            self.spool_state.wake()

    async def _spill_over_bound(self) -> None:
        """Move this table's newest idle memory batches to the spool while the rows in
        memory, all tables together, are over ``spool.memory_rows``."""
        while self.spool_state.memory_rows > self.memory_limit and self.memory_rows:
            batch = next((b for b in reversed(self.memory) if b.seq not in self.inflight), None)
            if batch is None:
                return
            self.inflight.add(batch.seq)  # no flusher takes it from memory meanwhile
            try:
                if self.journaled is not None:
                    await self.journaled()
                await trio.to_thread.run_sync(self.spool.write, batch)
            except StoreError as exc:
                metrics.SPOOL_ERRORS.labels(**self._label).inc()
                self.spool_state.mark_failed(exc)
                return
            finally:
                # claimable again: a flusher that looked meanwhile found it in flight and
                # waits for work (with the bound at 0 it may be the only batch in memory)
                self.inflight.discard(batch.seq)
                self.work.set()
            self.spool_state.mark_ok()
            metrics.SPOOLED_BATCHES.labels(**self._label).inc()
            self.memory.remove(batch)
            self.memory_rows -= len(batch.rows)
            # A flusher that looked while the batch was being spooled found nothing to take
            # (in flight, not yet on disk): it is written from the spool as soon as the
            # database takes it, not when the next batch happens to be sealed.
            self.work.set()

    # --- flusher --------------------------------------------------------------------------

    def _pick(self) -> tuple[Batch | None, int | None]:
        """The lowest-numbered batch no worker is writing: (memory batch, spool seq)."""
        in_memory = next((b for b in self.memory if b.seq not in self.inflight), None)
        spooled = None if self.spool_busy else self.spool.head()
        if spooled is not None and (in_memory is None or spooled < in_memory.seq):
            return None, spooled
        return in_memory, None

    async def _next_batch(self) -> tuple[Batch, bool]:
        """Claim the next batch to write and say whether it came from the spool."""
        while True:
            batch, spooled = self._pick()
            if spooled is not None:
                self.spool_busy = True  # spooled batches are written one at a time, in order
                try:
                    if self.loaded is None or self.loaded.seq != spooled:
                        self.loaded = await trio.to_thread.run_sync(self.spool.read, spooled)
                except BaseException:
                    self.spool_busy = False
                    raise
                return self.loaded, True
            if batch is not None:
                self.inflight.add(batch.seq)
                return batch, False
            if self.work.is_set():
                self.work = trio.Event()
            await self.work.wait()

    def _release(self, batch: Batch, from_spool: bool) -> None:
        if from_spool:
            self.spool_busy = False
        else:
            self.inflight.discard(batch.seq)

    def _write(self, rows: list[Row]) -> WriteResult:
        self.state.prepare()
        started = time.perf_counter()
        result = write_rows(self.pool, self.spec, rows, self.dead, copy_new=self.copy_new)
        metrics.FLUSH_SECONDS.labels(**self._label).observe(time.perf_counter() - started)
        return result

    async def _attempt(self, batch: Batch, from_spool: bool) -> bool:
        """Write ``batch`` once and account for it; False when the database is unavailable
        (the batch stays where it was). Raises what the write raises otherwise."""
        try:
            if not from_spool and self.journaled is not None:
                await self.journaled()
            # Abandoned only past the shutdown deadline (see :meth:`flush_forever`).
            result = await trio.to_thread.run_sync(
                self._write, batch.rows, limiter=self.pool.limiter, abandon_on_cancel=True
            )
        except DatabaseUnavailable as exc:
            self._release(batch, from_spool)
            self.state.mark_down(exc)
            metrics.FLUSH_ERRORS.labels(**self._label).inc()
            return False
        except BaseException:
            self._release(batch, from_spool)
            raise
        self.state.mark_up()
        self._account(result)
        self.oldest.pop(batch.seq, None)
        self.first.pop(batch.seq, None)
        if from_spool:
            # A crash before the file is gone rewrites the batch; the keys absorb it.
            try:
                await trio.to_thread.run_sync(self.spool.remove, batch.seq)
            finally:
                self.loaded = None
                self._release(batch, from_spool)
        else:
            self.memory.remove(batch)
            self.memory_rows -= len(batch.rows)
            self._release(batch, from_spool)
        self.work.set()  # another worker may be waiting for the spool to be free
        self._publish()
        self._progressed()
        return True

    async def write_direct(self, rows: list[Row]) -> None:
        """Write ``rows`` now, in order, in chunks of the batch size, outside the batches
        (:meth:`Store.write_first`). Raises what a write raises (``DatabaseUnavailable``:
        the chunks before it are committed; writing them again adds nothing)."""
        for start in range(0, len(rows), self.batch_size):
            result = await trio.to_thread.run_sync(
                self._write,
                rows[start : start + self.batch_size],
                limiter=self.pool.limiter,
                abandon_on_cancel=True,
            )
            self.state.mark_up()
            self._account(result)
        self._progressed()

    def closing(self, deadline: float) -> None:
        """Shutdown has begun: writes in flight may run until ``deadline`` (trio time)."""
        self.stop_at = deadline
        for scope in self.writing:
            scope.deadline = deadline

    async def flush_forever(self) -> None:
        """Write waiting batches, lowest first (memory or spool, whatever put them there);
        back off while the database is unavailable.

        Several of these may run per table: while one waits on the server's INSERT, the
        next batch's COPY is encoded. A write in flight is shielded from cancellation
        until :meth:`closing`'s deadline, so its outcome is known and counted (a write
        abandoned mid-flight could commit unseen: the database would hold rows
        :attr:`rows_written` never counted); only a database that does not answer within
        the grace is abandoned (the batch stays, a late commit is absorbed by the keys
        when it is written again).
        """
        backoff = Backoff(_BACKOFF_START, _BACKOFF_MAX)
        if self.gate is not None:
            await self.gate.wait()
        while True:
            batch, from_spool = await self._next_batch()
            with trio.CancelScope(shield=True, deadline=self.stop_at) as scope:
                self.writing.add(scope)
                try:
                    written = await self._attempt(batch, from_spool)
                finally:
                    self.writing.discard(scope)
            if scope.cancelled_caught:
                await trio.lowlevel.checkpoint()  # shutdown: the outer cancellation ends us
                continue
            if written:
                backoff.reset()
            else:
                await trio.sleep(backoff.next())

    # --- shutdown -------------------------------------------------------------------------

    def take_leftovers(self) -> None:
        """Seal the open batch and whatever is still buffered in the channel, in memory."""
        self._take()
        self.closed = True
        self.room.set()  # senders waiting for room find the channel closed
        for batch in self._sealed(self.open_rows, len(self.open_rows)):
            self.memory.append(batch)
            self.memory_rows += len(batch.rows)

    async def flush_rest(self) -> None:
        """Write the in-memory and spooled batches, lowest sequence first, while the database
        takes them (shutdown path: the flushers have stopped)."""
        while True:
            head = self.spool.head()
            batch = self.memory[0] if self.memory else None
            if head is not None and (batch is None or head < batch.seq):
                self.spool_busy = True
                try:
                    batch = await trio.to_thread.run_sync(self.spool.read, head)
                except StoreError as exc:
                    self.spool_busy = False
                    log.error("%s: final flush: %s", self.spec.name, exc)
                    return
                from_spool = True
            elif batch is not None:
                self.inflight.add(batch.seq)
                from_spool = False
            else:
                return
            try:
                if not await self._attempt(batch, from_spool):
                    return
            except StoreError as exc:
                log.error("%s: final flush failed, spooling instead: %s", self.spec.name, exc)
                return

    def spill_memory(self) -> int:
        """Spool every in-memory batch, blocking (last step of shutdown); returns the rows
        the spool disk refused (logged; they are in the journal only)."""
        refused = 0
        for batch in list(self.memory):
            try:
                self.spool.write(batch)
            except StoreError as exc:
                metrics.SPOOL_ERRORS.labels(**self._label).inc()
                self.spool_state.mark_failed(exc)
                refused += len(batch.rows)
                continue
            metrics.SPOOLED_BATCHES.labels(**self._label).inc()
            self.memory.remove(batch)
            self.memory_rows -= len(batch.rows)
        self._publish()
        if refused:
            log.error(
                "%s: %d rows neither written nor spooled at shutdown (spool disk: %s); "
                "they are in the journal: replay it into the database",
                self.spec.name,
                refused,
                self.spool_state.error,
            )
        return refused


def _time_of(spec: TableSpec) -> Callable[[Row], int]:
    """A row's time for the watermark: receive or exchange time, whichever is earlier (a
    trade backfilled over REST is received now with an old exchange time); markets: their
    update time; gaps: their start."""
    columns = spec.columns
    if "received_at" in columns:
        received = columns.index("received_at")
        exchange = columns.index("exchange_ts") if "exchange_ts" in columns else received

        def earlier(row: Row) -> int:
            at: Any = row[received]
            when: Any = row[exchange]
            return int(at if when is None or at < when else when)

        return earlier
    index = columns.index("updated_at" if "updated_at" in columns else "start_ts")
    return lambda row: int(row[index])  # type: ignore[arg-type]  # a BIGINT time column


class RowSender:
    """One producer's channel to a table's writer: ``send``/``send_nowait`` like a
    ``trio.MemorySendChannel[Row]`` (``trio.WouldBlock`` when full; a row costs a list
    append, no Trio channel hop), ``send_batch``/
    ``send_batch_nowait`` for a list of rows in one hand-over (the per-row calls are a batch
    of one), plus ``clone``, ``close`` and ``async with``. Each row is counted as pending
    from the moment its send starts, so :meth:`Store.committed` and the watermark see it
    before the writer does. The channel is bounded in rows: a send waits (``_nowait``:
    raises ``trio.WouldBlock``) while the writer's channel holds ``max(1024, 4 *
    batch_size)`` rows or more; a batch is taken whole once there is room, so the channel
    holds at most that bound plus one batch per waiting sender. Raises
    ``trio.BrokenResourceError`` once the store has shut down, ``trio.ClosedResourceError``
    after :meth:`close`. The list handed over belongs to the store from then on: the
    caller must not change it."""

    __slots__ = ("_closed", "_writer")

    def __init__(self, writer: _TableWriter) -> None:
        self._writer = writer
        self._closed = False
        writer.senders += 1

    def _check(self) -> _TableWriter:
        if self._closed:
            raise trio.ClosedResourceError
        writer = self._writer
        if writer.closed:
            raise trio.BrokenResourceError
        return writer

    def send_nowait(self, row: Row) -> None:
        writer = self._check()
        inbox = writer.inbox
        if len(inbox) >= writer.capacity:
            raise trio.WouldBlock
        oldest = writer.time_of(row)
        number = writer.next_number
        writer.next_number = number + 1
        if not inbox:
            writer.inbox_first, writer.inbox_oldest = number, oldest
        elif oldest < writer.inbox_oldest:
            writer.inbox_oldest = oldest
        inbox.append(row)
        if len(inbox) >= writer.wake_at and writer.arrived:
            writer.arrived.unpark_all()

    async def send(self, row: Row) -> None:
        await self.send_batch([row])

    def send_batch_nowait(self, rows: list[Row]) -> None:
        """Hand ``rows`` over now, or raise ``trio.WouldBlock`` (nothing handed over)."""
        writer = self._check()
        if len(writer.inbox) >= writer.capacity:
            raise trio.WouldBlock
        number, oldest = writer.begin(rows)
        writer.enqueue(number, rows, oldest)

    async def send_batch(self, rows: list[Row]) -> None:
        """Hand ``rows`` over, waiting while the channel is full; counted as pending
        from the moment this is called (cancelled: as if never handed over)."""
        writer = self._writer
        number, oldest = writer.begin(rows)
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check()
            if len(writer.inbox) >= writer.capacity:
                await writer.wait_room()
                self._check()
        except BaseException:
            if rows:
                writer.abandon(number)
            raise
        writer.enqueue(number, rows, oldest, wake=True)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def clone(self) -> RowSender:
        if self._closed:
            raise trio.ClosedResourceError
        return RowSender(self._writer)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        writer.senders -= 1
        if not writer.senders and writer.arrived:
            writer.arrived.unpark_all()  # the collector ends once it took every row

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> RowSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RowSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Store:
    """The running writers of one database. Obtain it from :func:`open_store`."""

    def __init__(
        self,
        url: str,
        cfg: StoreConfig,
        *,
        watermark: bool = True,
        wall_us: WallClock = system_wall_us,
        copy_new: bool | Collection[str] = False,
        prepare: Callable[[], object] | None = None,
        first: bool = False,
    ) -> None:
        self.watermark = watermark
        self.opened_at: int | None = None  # when the first watermark was recorded (µs)
        self._wall_us = wall_us
        self.url = url
        self._cfg = cfg
        self._spool_root = Path(cfg.spool.dir)
        self._lock: IO[bytes] | None = None
        self._owner: Any = None  # the connection holding the gatherer id's lock
        self._spool_state = _SpoolState()
        self._state = _DbState(prepare, on_down=self._spool_state.wake)
        # While set, the watermark is not recorded: the previous run's stays readable
        # (restart recovery reads it once the database is back; :meth:`hold_watermark`).
        self._watermark_held = False
        self._holds: dict[object, int] = {}
        self._released = trio.Event()
        # Set once batches may be written: at once, or with ``first`` once the rows that
        # must precede them are written (:meth:`write_first`) or none are (:meth:`skip_first`)
        self._gate = trio.Event()
        if not first:
            self._gate.set()
        self._first_rows: list[tuple[str, Row]] | None = None  # given, not yet written
        self._pool = ConnectionPool(
            url,
            cfg.database.max_connections,
            statement_timeout=float(cfg.database.statement_timeout),
            lock_timeout=float(cfg.database.lock_timeout),
        )
        dead = DeadLetters(Path(cfg.spool.dead_letter_dir), wall_us=wall_us)
        self.dead_letters = dead
        self._writers: dict[str, _TableWriter] = {
            name: _TableWriter(
                spec,
                getattr(cfg.writers, spec.name),
                pool=self._pool,
                spool=Spool(self._spool_root, spec),
                dead=dead,
                memory_rows=cfg.spool.memory_rows,
                state=self._state,
                spool_state=self._spool_state,
                copy_new=copy_new is True or (copy_new is not False and name in copy_new),
                gate=self._gate if first else None,
            )
            for name, spec in TABLES.items()
        }

    def follow(self, journaled: Callable[[], Awaitable[None]]) -> None:
        """Make every later batch of this process wait for ``journaled()`` before it reaches
        the database or the spool: with :meth:`kalshi.journal.JournalWriter.on_disk`, a row is
        never stored ahead of the frame it came from in the journal, so a ``kill -9`` leaves
        no stored row that a rebuild from the journal lacks (docs/journal.md)."""
        for writer in self._writers.values():
            writer.journaled = journaled

    def sender(self, table: str) -> RowSender:
        """A new send channel for ``table``'s rows; the caller owns (and closes) it.

        Raises :class:`StoreError` for an unknown table.
        """
        writer = self._writers.get(table)
        if writer is None:
            raise StoreError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
        return writer.send.clone()

    async def write_first(self, rows: list[tuple[str, Row]]) -> None:
        """Write ``rows`` (``(table, row)``, in the order received: a previous run's journal
        tail) before any batch, this process's or the spool's, then let the batches follow.
        Where rows of one key come from more than one source, the order of commits decides
        which is stored (``TableSpec.serial``): the tail's trade frames were received before
        a later run's REST backfill of them (in the spool, or waiting in memory while the
        database was down), so they are written first. Per table in order, in chunks of its
        batch size; rows already stored are dropped by their keys. Raises
        ``DatabaseUnavailable`` (marked down; call again) and ``StoreError``; when
        interrupted, a clean shutdown tries once more within its grace. Only for a store
        opened with ``first``."""
        assert not self._gate.is_set(), "batches are already being written"
        self._first_rows = rows
        tables: dict[str, list[Row]] = {}
        for table, row in rows:
            tables.setdefault(table, []).append(row)
        try:
            for table, table_rows in tables.items():
                await self._writers[table].write_direct(table_rows)
        except DatabaseUnavailable as exc:
            self._state.mark_down(exc)
            raise
        self._first_rows = None
        self.skip_first()

    def skip_first(self) -> None:
        """No rows precede the batches (no previous run, or its state unreadable): write
        them from now on."""
        self._gate.set()

    def unavailable(self, exc: BaseException) -> None:
        """The database refused a read made for this store (its state, until a write
        succeeds: ``/health``'s ``db.state``)."""
        self._state.mark_down(exc)

    async def committed(self) -> None:
        """Return once every row handed to any sender before this call is committed: the
        database acknowledged it (a dead-lettered row counts as handled). Waits as long as
        the database is down; bound it with a deadline."""
        targets = [(w, w.next_number - 1) for w in self._writers.values()]
        for writer, number in targets:
            await writer.wait_committed(number)

    async def drain(self) -> None:
        """:meth:`committed`, and the spool is empty too (batches spooled by an earlier
        process included): every row this store knows of is in the database. Open batches
        are sealed at once, not at the end of their ``flush_interval`` (the wait it saves:
        up to 1 s a replay, docs/performance.md)."""
        for writer in self._writers.values():
            writer.seal_now()
        await self.committed()
        for writer in self._writers.values():
            while writer.spool.rows:
                await writer.progress.wait()

    async def room_for(self, rows: int) -> None:
        """For a producer that can wait (a replay, whose rows are in its journal already):
        return once ``rows`` more rows fit within ``spool.memory_rows`` beside the rows this
        store holds in memory (channels, open and sealed batches, every table), so that they
        are written from memory instead of spilled to the spool and read back. Returns at
        once while the database is unavailable (rows then spill as they always do), when
        nothing is held (a hand-over larger than the bound takes the spool, as before) or
        before batches may be written (``first``). Waits as long as the database keeps them
        in memory; bound it with a deadline. A producer that cannot wait (the gatherer's
        sockets) does not call it: the bound then spills."""
        limit = self._cfg.spool.memory_rows
        writers = self._writers.values()
        while self._gate.is_set() and self._state.up is not False:
            held = self._spool_state.memory_rows
            held += sum(w.channel_rows + len(w.open_rows) for w in writers)
            if held == 0 or held + rows <= limit:
                return
            await self._spool_state.freed.wait()

    def collected(self) -> dict[str, int]:
        """Per table: rows the database acknowledged as new since the store opened."""
        return {name: writer.rows_written for name, writer in self._writers.items()}

    def stats(self) -> StoreStats:
        return StoreStats(
            db_up=self._state.up,
            db_error=self._state.error,
            tables={name: writer.stats() for name, writer in self._writers.items()},
            spool_ok=self._spool_state.ok,
            spool_error=self._spool_state.error,
            paused=tuple(sorted(self._spool_state.paused)),
            memory_rows=self._spool_state.memory_rows,
        )

    # --- lifecycle ------------------------------------------------------------------------

    def _open(self) -> None:
        self._lock = lock_directory(self._spool_root)
        try:
            self.dead_letters.check()
        except BaseException:
            self._lock.close()
            self._lock = None
            raise
        for writer in self._writers.values():
            writer.spool.load()
            writer.next_seq = writer.spool.max_seq() + 1
            writer._publish()
        spooled = sum(writer.spool.rows for writer in self._writers.values())
        try:
            claim_spool(self._spool_root, database_identity(self.url), spooled)
            if self.watermark:
                self._owner = claim_gatherer_id(self.url, self._cfg.gatherer_id)
        except BaseException:
            self._lock.close()
            self._lock = None
            raise

    async def _run(self, nursery: trio.Nursery) -> None:
        if self.watermark:
            await self._first_watermark()
        for writer in self._writers.values():
            nursery.start_soon(writer.collect)
            for _ in range(writer.workers):
                nursery.start_soon(writer.flush_forever)
        if self.watermark:
            nursery.start_soon(self._watermarks)

    # --- the watermark ----------------------------------------------------------------------

    def hold_watermark(self, held: bool) -> None:
        """Record no watermark while ``held``: the database was unreadable at start, and
        the previous run's watermark says where its journal tail starts."""
        self._watermark_held = held

    def hold(self, key: object, since_us: int) -> None:
        """Rows as old as ``since_us`` may still come (a REST backfill is due): keep the
        watermark at or before it until :meth:`release` of ``key``."""
        self._holds[key] = min(since_us, self._holds.get(key, since_us))

    def release(self, key: object) -> None:
        self._holds.pop(key, None)
        if not self._holds:
            self._released.set()
            self._released = trio.Event()

    async def released(self) -> None:
        """Return once no :meth:`hold` is active (every backfill due has handed its rows)."""
        while self._holds:
            await self._released.wait()

    def complete_before(self, now_us: int) -> int:
        """A time (µs) before which every row handed to the store is committed: ``now_us``,
        or the oldest time of a row still pending (in a channel from the moment its send
        started, in a batch, or in the spool; a batch spooled by an earlier process counts
        as 0), or an active :meth:`hold`, whichever is earliest. No slack: rows are counted
        from the moment they are handed over. Producers stamp and hand rows over without
        yielding in between, so no received row is ever outside this account."""
        pending = [p for w in self._writers.values() if (p := w.pending_since()) is not None]
        return min([now_us, *pending, *self._holds.values()])

    async def _first_watermark(self) -> None:
        """Record a watermark before any row can be committed, unless one is recorded
        already (a previous run's, which stays: everything received after it is newer).
        A database with rows and no watermark reads as finished history to the
        deduplicator, which a live gatherer's is not. Its ``updated_at`` is
        :attr:`opened_at`: restart recovery (:func:`kalshi.store.recovery.last_run`) skips
        it. Bounded: a database that is down or hung does not delay the start."""
        now = self.opened_at = self._wall_us()

        def insert() -> None:
            with translating(), self._pool.connection() as pooled, pooled.conn.transaction():
                pooled.conn.execute(
                    _FIRST_WATERMARK_SQL, (self._cfg.gatherer_id, self.complete_before(now), now)
                )

        with trio.move_on_after(_WATERMARK_EVERY):
            try:
                await trio.to_thread.run_sync(
                    insert, limiter=self._pool.limiter, abandon_on_cancel=True
                )
            except DatabaseUnavailable as exc:
                self._state.mark_down(exc)
                log.debug("first watermark not recorded: %s", exc)
            except StoreError as exc:
                log.debug("first watermark not recorded: %s", exc)
            else:
                if self._state.up is None:  # the database answered before any write did
                    self._state.mark_up()

    def _publish_watermark(self, value: int, now_us: int) -> None:
        with translating(), self._pool.connection() as pooled, pooled.conn.transaction():
            pooled.conn.execute(_WATERMARK_SQL, (self._cfg.gatherer_id, value, now_us))

    async def _watermarks(self) -> None:
        """Every second, record :meth:`complete_before` in ``ingest_watermark``; while the
        database is down the old value stays (readers wait, which is right)."""
        while True:
            await trio.sleep(_WATERMARK_EVERY)
            if self._watermark_held or not self._gate.is_set():
                continue
            now = self._wall_us()
            try:
                await trio.to_thread.run_sync(
                    self._publish_watermark,
                    self.complete_before(now),
                    now,
                    limiter=self._pool.limiter,
                )
            except StoreError as exc:
                log.debug("watermark not recorded: %s", exc)

    def _closing(self, deadline: float) -> None:
        for writer in self._writers.values():
            writer.closing(deadline)

    async def _shutdown(self, deadline: float) -> None:
        """Write what is left (memory and spool, lowest first) until ``deadline`` (trio
        time), then spool the rest."""
        grace = max(0.0, deadline - trio.current_time())
        for writer in self._writers.values():
            writer.send.close()
            writer.take_leftovers()
        try:
            with trio.move_on_at(deadline, shield=True):
                if self._first_rows is not None:  # given and not written yet: first
                    try:
                        await self.write_first(self._first_rows)
                    except StoreError as exc:
                        log.error("final flush: the rows to write first: %s", exc)
                if self._gate.is_set():  # else the batches wait on disk behind them
                    async with trio.open_nursery() as nursery:
                        for writer in self._writers.values():
                            nursery.start_soon(writer.flush_rest)
            # Everything received is committed: the watermark is now.
            idle = all(w.pending_since() is None for w in self._writers.values())
            held = self._watermark_held or not self._gate.is_set()
            if self.watermark and idle and not self._holds and not held:
                now = self._wall_us()
                with trio.move_on_after(grace, shield=True):
                    try:
                        await trio.to_thread.run_sync(
                            self._publish_watermark, now, now, abandon_on_cancel=True
                        )
                    except StoreError as exc:
                        log.debug("final watermark not recorded: %s", exc)
        finally:
            # Past the grace deadline (or with the database down): keep every row on disk.
            # Blocking on purpose: this is the last thing the store does.
            refused = sum(writer.spill_memory() for writer in self._writers.values())
            self._pool.close()
            if self._owner is not None:
                self._owner.close()
                self._owner = None
            if self._lock is not None:
                self._lock.close()
                self._lock = None
        if refused:
            raise StoreError(
                f"{refused} rows neither written nor spooled at shutdown (spool disk: "
                f"{self._spool_state.error}); they are in the journal"
            )


@asynccontextmanager
async def open_store(
    url: str,
    cfg: StoreConfig,
    *,
    watermark: bool = True,
    wall_us: WallClock = system_wall_us,
    copy_new: bool | Collection[str] = False,
    prepare: Callable[[], object] | None = None,
    first: bool = False,
) -> AsyncIterator[Store]:
    """Run the batch writers of every table against the database at ``url``.

    ``watermark``: record the ingest watermark (a live gatherer); off for writers of
    historical rows (a replay, a scripted recording), whose receive times are in the past.
    ``wall_us``: the wall clock (µs) that stamps watermarks and dead letters.
    ``copy_new``: rows are expected to be new (a replay: True, every table; a live gatherer:
    the tables named, whose rows are unique by construction): each batch is COPYed straight
    into its table, and only a batch that fails so (a row already stored, a rejected
    value) takes the staged insert (:mod:`kalshi.store.insert`); the same rows end up
    stored either way, at about half the database's work.
    ``prepare``: run once (blocking) before the first batch is written, retried like a
    write while it raises ``DatabaseUnavailable`` (the gatherer's migrations when the
    database was unreachable at start: rows wait in memory and the spool meanwhile).
    ``first``: no batch is written (not the spool's either) before :meth:`Store.write_first`
    or :meth:`Store.skip_first` (a gatherer's restart: its previous run's journal tail goes
    first); no watermark is recorded meanwhile.

    Yields a :class:`Store`; get channels with :meth:`Store.sender`. Batches that were
    spooled by an earlier process are drained first. On exit (normal, error or
    cancellation) the writers stop: writes in flight finish (and are counted), then
    everything received and everything spooled is written, lowest sequence first, within
    ``cfg.shutdown_grace`` seconds of the exit (shielded), and what could not be written is
    spooled, so nothing received is lost. Raises :class:`StoreError` if the spool directory is in
    use by another process or a write fails for a reason other than the rows or an
    unavailable database (e.g. missing tables: run migrations first).
    """
    store = Store(
        url,
        cfg,
        watermark=watermark,
        wall_us=wall_us,
        copy_new=copy_new,
        prepare=prepare,
        first=first,
    )
    await trio.to_thread.run_sync(store._open)
    grace = float(cfg.shutdown_grace)
    deadline: float | None = None
    try:
        async with trio.open_nursery() as nursery:
            await store._run(nursery)
            try:
                yield store
            finally:
                # One deadline for the whole shutdown: writes in flight finish (and are
                # counted) within it, then what is left is written, then spooled.
                deadline = trio.current_time() + grace
                store._closing(deadline)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store._shutdown(trio.current_time() + grace if deadline is None else deadline)
