"""The batch writers: one Trio task pair per table, never losing a row.

Per table, a *collector* task reads the table's bounded channel and seals batches at
``batch_size`` rows or ``flush_interval`` after a batch's first row, whichever comes
first. A sealed batch waits in memory while the table's in-memory rows stay within
``spool.memory_rows``; beyond that it is spilled to the on-disk spool. A *flusher* task
writes batches lowest sequence number first (memory or spool), retrying with backoff while
the database is unavailable. Sequence numbers continue those already in the spool, so a
new process drains an earlier one's spool first.

Database writes run in worker threads (sync psycopg) admitted by the connection pool's
limiter; the event loop never blocks on the database.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import trio
from attrs import frozen

from kalshi.config import GathererConfig, WriterConfig
from kalshi.errors import DatabaseUnavailable, StoreError
from kalshi.models.rows import Row
from kalshi.store import metrics
from kalshi.store.connection import translating
from kalshi.store.deadletter import DeadLetters
from kalshi.store.insert import WriteResult, write_rows
from kalshi.store.pool import ConnectionPool
from kalshi.store.schema import TABLES, TableSpec
from kalshi.store.spool import Batch, Spool, lock_directory

__all__ = ["Store", "StoreStats", "TableStats", "open_store"]

log = logging.getLogger("kalshi.store")

_BACKOFF_START = 0.1
_BACKOFF_MAX = 5.0
_WORKERS = 2  # concurrent batch writes per table
_WATERMARK_EVERY = 1.0  # seconds
_WATERMARK_SQL = (
    "INSERT INTO ingest_watermark (gatherer_id, complete_before, updated_at)"
    " VALUES (%s, %s, %s) ON CONFLICT (gatherer_id) DO UPDATE"
    " SET complete_before = EXCLUDED.complete_before, updated_at = EXCLUDED.updated_at"
)


@frozen
class TableStats:
    queue_rows: int  # rows in memory: channel buffer, open batch, sealed batches
    rows_written: int  # rows new to the table since the store opened
    rows_duplicate: int  # rows whose key was already stored
    batches: int  # batches committed
    spool_rows: int
    spool_bytes: int
    spool_files: int
    dead_letters: int


@frozen
class StoreStats:
    db_up: bool  # the last database write succeeded (True before the first one)
    db_error: str  # the last unavailability error, '' when up
    tables: Mapping[str, TableStats]


class _DbState:
    def __init__(self) -> None:
        self.up = True
        self.error = ""

    def mark_up(self) -> None:
        if not self.up:
            log.info("database available again")
        self.up, self.error = True, ""
        metrics.DB_UP.set(1)

    def mark_down(self, exc: BaseException) -> None:
        if self.up:
            log.warning("database unavailable, batches wait in memory then spool: %s", exc)
        self.up, self.error = False, str(exc)
        metrics.DB_UP.set(0)


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
    ) -> None:
        self.spec = spec
        self.batch_size = cfg.batch_size
        self.flush_interval = float(cfg.flush_interval)
        self.pool = pool
        self.spool = spool
        self.dead = dead
        self.memory_limit = memory_rows
        self.state = state
        self.send, self.recv = trio.open_memory_channel[Row](max(1024, 4 * cfg.batch_size))
        self.partial: list[Row] = []
        self.memory: deque[Batch] = deque()
        self.memory_rows = 0
        self.next_seq = 1
        self.work = trio.Event()
        self.loaded: Batch | None = None  # a spooled batch read back, being written
        self.inflight: set[int] = set()  # seqs of memory batches being written
        self.spool_busy = False  # a spooled batch is being written
        # Upserts keep one writer so the last row of a key always lands last.
        self.workers = 1 if spec.upsert else _WORKERS
        # seq -> oldest receive time (µs) of a batch made by this process, until committed
        self.oldest: dict[int, int] = {}
        self.rows_written = 0
        self.rows_duplicate = 0
        self.batches = 0
        self.dead_letters = 0
        self._label = {"table": spec.name}

    # --- accounting -----------------------------------------------------------------------

    def queue_rows(self) -> int:
        buffered = self.recv.statistics().current_buffer_used
        return buffered + len(self.partial) + self.memory_rows

    def pending_since(self) -> int | None:
        """The oldest receive time (µs) of a row received but not committed, None when
        nothing is pending; 0 for batches spooled by an earlier process (unknown)."""
        times = [self.oldest.get(seq, 0) for seq in self.spool.seqs()]
        times.extend(self.oldest[b.seq] for b in self.memory if b.seq in self.oldest)
        if self.partial:
            times.append(_oldest(self.partial))
        return min(times) if times else None

    def stats(self) -> TableStats:
        return TableStats(
            queue_rows=self.queue_rows(),
            rows_written=self.rows_written,
            rows_duplicate=self.rows_duplicate,
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
        self.dead_letters += result.dead
        self.batches += 1
        metrics.ROWS_WRITTEN.labels(**self._label).inc(result.inserted)
        metrics.ROWS_DUPLICATE.labels(**self._label).inc(result.duplicates)
        metrics.BATCHES.labels(**self._label).inc()
        if result.dead:
            metrics.DEAD_LETTERS.labels(**self._label).inc(result.dead)
            log.warning("%s: %d rows dead-lettered", self.spec.name, result.dead)

    # --- collector ------------------------------------------------------------------------

    async def collect(self) -> None:
        """Read rows into batches until every sender is closed."""
        deadline = math.inf
        while True:
            with trio.move_on_at(deadline):
                try:
                    row = await self.recv.receive()
                except trio.EndOfChannel:
                    break
                if not self.partial:
                    deadline = trio.current_time() + self.flush_interval
                self.partial.append(row)
                while len(self.partial) < self.batch_size:
                    try:
                        self.partial.append(self.recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                if len(self.partial) < self.batch_size:
                    continue
            await self._seal()
            deadline = math.inf
        await self._seal()

    async def _seal(self) -> None:
        """Turn the open batch into a sealed one, in memory or (over the bound) on disk."""
        if not self.partial:
            return
        batch = Batch(self.next_seq, self.partial)
        self.next_seq += 1
        self.partial = []
        self.oldest[batch.seq] = _oldest(batch.rows)
        if self.memory_rows + len(batch.rows) <= self.memory_limit:
            self.memory.append(batch)
            self.memory_rows += len(batch.rows)
        else:
            try:
                await trio.to_thread.run_sync(self.spool.write, batch)
            except BaseException:
                # Keep the rows where shutdown will find them (and try to spool them again).
                self.memory.append(batch)
                self.memory_rows += len(batch.rows)
                raise
            metrics.SPOOLED_BATCHES.labels(**self._label).inc()
        self.work.set()
        self._publish()

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
        started = time.perf_counter()
        result = write_rows(self.pool, self.spec, rows, self.dead)
        metrics.FLUSH_SECONDS.labels(**self._label).observe(time.perf_counter() - started)
        return result

    async def flush_forever(self) -> None:
        """Write waiting batches, lowest first; back off while the database is unavailable.

        Several of these may run per table: while one waits on the server's INSERT, the
        next batch's COPY is encoded.
        """
        backoff = _BACKOFF_START
        while True:
            batch, from_spool = await self._next_batch()
            try:
                result = await trio.to_thread.run_sync(
                    self._write, batch.rows, limiter=self.pool.limiter
                )
            except DatabaseUnavailable as exc:
                self._release(batch, from_spool)
                self.state.mark_down(exc)
                metrics.FLUSH_ERRORS.labels(**self._label).inc()
                await trio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            except BaseException:
                self._release(batch, from_spool)
                raise
            backoff = _BACKOFF_START
            self.state.mark_up()
            self._account(result)
            self.oldest.pop(batch.seq, None)
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

    # --- shutdown -------------------------------------------------------------------------

    def take_leftovers(self) -> None:
        """Seal the open batch and whatever is still buffered in the channel, in memory."""
        while True:
            try:
                self.partial.append(self.recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self.recv.close()
        for start in range(0, len(self.partial), self.batch_size):
            rows = self.partial[start : start + self.batch_size]
            self.oldest[self.next_seq] = _oldest(rows)
            self.memory.append(Batch(self.next_seq, rows))
            self.next_seq += 1
            self.memory_rows += len(rows)
        self.partial = []

    async def flush_memory(self) -> None:
        """Write the in-memory batches while the database takes them (shutdown path)."""
        while self.memory:
            batch = self.memory[0]
            try:
                # Abandoned on the grace deadline: the batch is then spooled as well, and a
                # late commit of this thread is absorbed by the keys on the next drain.
                result = await trio.to_thread.run_sync(
                    self._write, batch.rows, limiter=self.pool.limiter, abandon_on_cancel=True
                )
            except DatabaseUnavailable as exc:
                self.state.mark_down(exc)
                return
            except StoreError as exc:
                log.error("%s: final flush failed, spooling instead: %s", self.spec.name, exc)
                return
            self.state.mark_up()
            self._account(result)
            self.oldest.pop(batch.seq, None)
            self.memory.popleft()
            self.memory_rows -= len(batch.rows)

    def spill_memory(self) -> None:
        """Spool every in-memory batch, blocking (last step of shutdown)."""
        while self.memory:
            batch = self.memory[0]
            self.spool.write(batch)
            metrics.SPOOLED_BATCHES.labels(**self._label).inc()
            self.memory.popleft()
            self.memory_rows -= len(batch.rows)
        self._publish()


def _oldest(rows: list[Row]) -> int:
    """The oldest time among ``rows``: receive or exchange time, whichever is earlier (a
    trade backfilled over REST is received now with an old exchange time); markets: their
    update time; gaps: their start."""
    first = rows[0]
    if hasattr(first, "received_at"):
        if hasattr(first, "exchange_ts"):
            return min(min(r.exchange_ts or r.received_at, r.received_at) for r in rows)  # type: ignore[union-attr]
        return min(int(r.received_at) for r in rows)  # type: ignore[union-attr]
    name = "updated_at" if hasattr(first, "updated_at") else "start_ts"
    return min(int(getattr(row, name)) for row in rows)


class Store:
    """The running writers of one database. Obtain it from :func:`open_store`."""

    def __init__(self, url: str, cfg: GathererConfig, *, watermark: bool = True) -> None:
        self.watermark = watermark
        self.url = url
        self._cfg = cfg
        self._spool_root = Path(cfg.spool.dir)
        self._lock: IO[bytes] | None = None
        self._state = _DbState()
        self._holds: dict[object, int] = {}
        self._pool = ConnectionPool(url, cfg.timescaledb.max_connections)
        dead = DeadLetters(Path(cfg.spool.dead_letter_dir))
        self.dead_letters = dead
        self._writers: dict[str, _TableWriter] = {
            name: _TableWriter(
                spec,
                getattr(cfg.writers, spec.writer_key),
                pool=self._pool,
                spool=Spool(self._spool_root, spec),
                dead=dead,
                memory_rows=cfg.spool.memory_rows,
                state=self._state,
            )
            for name, spec in TABLES.items()
        }

    def sender(self, table: str) -> trio.MemorySendChannel[Row]:
        """A new send channel for ``table``'s rows; the caller owns (and closes) it.

        Raises :class:`StoreError` for an unknown table.
        """
        writer = self._writers.get(table)
        if writer is None:
            raise StoreError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
        return writer.send.clone()

    def stats(self) -> StoreStats:
        return StoreStats(
            db_up=self._state.up,
            db_error=self._state.error,
            tables={name: writer.stats() for name, writer in self._writers.items()},
        )

    # --- lifecycle ------------------------------------------------------------------------

    def _open(self) -> None:
        self._lock = lock_directory(self._spool_root)
        for writer in self._writers.values():
            writer.spool.load()
            writer.next_seq = writer.spool.max_seq() + 1
            writer._publish()

    async def _run(self, nursery: trio.Nursery) -> None:
        for writer in self._writers.values():
            nursery.start_soon(writer.collect)
            for _ in range(writer.workers):
                nursery.start_soon(writer.flush_forever)
        if self.watermark:
            nursery.start_soon(self._watermarks)

    # --- the watermark ----------------------------------------------------------------------

    def hold(self, key: object, since_us: int) -> None:
        """Rows as old as ``since_us`` may still come (a REST backfill is due): keep the
        watermark at or before it until :meth:`release` of ``key``."""
        self._holds[key] = min(since_us, self._holds.get(key, since_us))

    def release(self, key: object) -> None:
        self._holds.pop(key, None)

    def complete_before(self, now_us: int) -> int:
        """A time (µs) before which every row received is committed.

        The oldest pending row of any table bounds it; so does ``now`` minus a slack for
        rows still in the channels (not visible here): twice the longest flush interval,
        at least one second.
        """
        slack = max(1.0, 2 * max(w.flush_interval for w in self._writers.values()))
        bound = now_us - int(slack * 1_000_000)
        pending = [p for w in self._writers.values() if (p := w.pending_since()) is not None]
        return min([bound, *pending, *self._holds.values()])

    def _publish_watermark(self, value: int, now_us: int) -> None:
        with translating(), self._pool.connection() as pooled, pooled.conn.transaction():
            pooled.conn.execute(_WATERMARK_SQL, (self._cfg.gatherer_id, value, now_us))

    async def _watermarks(self) -> None:
        """Every second, record :meth:`complete_before` in ``ingest_watermark``; while the
        database is down the old value stays (readers wait, which is right)."""
        while True:
            await trio.sleep(_WATERMARK_EVERY)
            now = time.time_ns() // 1000
            try:
                await trio.to_thread.run_sync(
                    self._publish_watermark,
                    self.complete_before(now),
                    now,
                    limiter=self._pool.limiter,
                )
            except StoreError as exc:
                log.debug("watermark not recorded: %s", exc)

    async def _shutdown(self, grace: float) -> None:
        for writer in self._writers.values():
            writer.send.close()
            writer.take_leftovers()
        try:
            with trio.move_on_after(grace, shield=True):
                async with trio.open_nursery() as nursery:
                    for writer in self._writers.values():
                        nursery.start_soon(writer.flush_memory)
            # Everything received is committed: the watermark is now.
            idle = all(w.pending_since() is None for w in self._writers.values())
            if self.watermark and idle and not self._holds:
                now = time.time_ns() // 1000
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
            for writer in self._writers.values():
                writer.spill_memory()
            self._pool.close()
            if self._lock is not None:
                self._lock.close()
                self._lock = None


@asynccontextmanager
async def open_store(
    url: str, cfg: GathererConfig, *, watermark: bool = True
) -> AsyncIterator[Store]:
    """Run the batch writers of every table against the database at ``url``.

    ``watermark``: record the ingest watermark (a live gatherer); off for writers of
    historical rows (a replay, a scripted recording), whose receive times are in the past.

    Yields a :class:`Store`; get channels with :meth:`Store.sender`. Batches that were
    spooled by an earlier process are drained first. On exit (normal, error or
    cancellation) the writers stop and everything received is written within
    ``cfg.shutdown_grace`` seconds (shielded), and what could not be written is spooled,
    so nothing received is lost. Raises :class:`StoreError` if the spool directory is in
    use by another process or a write fails for a reason other than the rows or an
    unavailable database (e.g. missing tables: run migrations first).
    """
    store = Store(url, cfg, watermark=watermark)
    await trio.to_thread.run_sync(store._open)
    try:
        async with trio.open_nursery() as nursery:
            await store._run(nursery)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store._shutdown(float(cfg.shutdown_grace))
