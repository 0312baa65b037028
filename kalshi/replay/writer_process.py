"""``kalshi replay --db --writers process``: the store's batch writers in a second process.

This process reads the journal and runs the pipeline (:func:`~kalshi.replay.core.replay`);
the rows go, a batch of one table at a time, as MessagePack (``msgspec``) over a
``multiprocessing`` pipe to a child process (``spawn``) that runs the *same* store,
:func:`~kalshi.store.open_store` (its batch writers, spool, dead letters, retries and
identity keys), with the rows rebuilt as their Row types (``kalshi.models.rows``) and each
batch handed to the store whole (:meth:`~kalshi.store.RowSender.send_batch`); the
child's side is :func:`kalshi.store.serve_batches`, outside this package so that the child
imports the store only. Once the journal is done the child drains the store as the inline
replay does and sends back, per table, the rows committed new, already stored, updated and
left unwritten: the replay's summary is the inline one.

Wire (one message per ``send_bytes``): a batch is one byte, the table's index in
:data:`~kalshi.store.TABLES`, then the MessagePack array of its rows; an empty message
ends the rows. The child answers with one MessagePack message: ``["ok", counts]`` or
``["error", message]`` (a :class:`~kalshi.errors.KalshiError` of the store, e.g. the spool
holds another database's rows).

Backpressure bounds memory: the pipeline waits while :data:`_IN_FLIGHT` encoded batches
wait for the pipe, the pipe's sender blocks while the child has not read, and the child
stops reading while its store holds ``spool.memory_rows`` rows in memory
(:meth:`~kalshi.store.Store.room_for`): the rows are in the journal already, so they wait
there rather than spill to the spool and be read back (which cost the child about 40% of
its CPU, docs/performance.md); with the database unavailable they spool as always.

Stopping: the child ignores SIGINT (Ctrl-C reaches the whole process group; this process
decides). When this process stops (Ctrl-C, an error, its end), it closes the pipe; the
child takes that as the end of its rows, commits what it received (or spools it, as
``open_store`` does on any exit) and exits; this process waits for it. SIGTERM to the child
stops its reading the same way and is reported as an error. A child that dies (killed, out
of memory) is one :class:`~kalshi.errors.StoreError`: rows it had not committed are not
written, and they are in the journal: replaying it again writes only those, since rows
already stored are skipped by their keys.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any, Literal

import msgspec
import trio

from kalshi.config import StoreConfig
from kalshi.errors import StoreError
from kalshi.models.rows import Row
from kalshi.store import TABLES, Store, drain_store, serve_batches, store_counts

__all__ = [
    "DEFAULT_WRITERS",
    "StoreSink",
    "Writers",
    "drain_store",
    "replay_through_process",
    "store_counts",
]

Writers = Literal["inline", "process"]
"""Where ``kalshi replay --db`` runs the store's writers: in this process's Trio loop, or
in a second process (this module)."""

DEFAULT_WRITERS: Writers = "inline"
"""``kalshi replay --db``'s ``--writers`` when not given."""

log = logging.getLogger("kalshi.replay")

_NAMES = tuple(TABLES)  # a batch's first byte: its table's index here
_INDEX = {name: i for i, name in enumerate(_NAMES)}
_BATCH_ROWS = 2_000  # rows of one table sent at a time
# encoded batches waiting for the pipe (130-160 KiB each: 10 MiB at most): deep enough that
# the pipeline runs on through the writer process's start-up (spawn and imports, 0.5-0.7 s)
_IN_FLIGHT = 64
_JOIN_SLACK = 30.0  # seconds past shutdown_grace a stopping child is waited for


def _grouped(rows: list[tuple[str, Row]]) -> list[list[Row]]:
    """``rows`` by table, in :data:`_NAMES` order, each table's in the order given."""
    groups: list[list[Row]] = [[] for _ in _NAMES]
    index = _INDEX
    for table, row in rows:
        groups[index[table]].append(row)
    return groups


class StoreSink:
    """The :class:`~kalshi.pipeline.Sink` onto a store in this process (``--writers
    inline``): each call's rows grouped by table, each group handed to the table's writer
    whole (:meth:`~kalshi.store.RowSender.send_batch`: one hand-over per table and call,
    not one per row), waiting while the store holds ``spool.memory_rows`` rows in memory
    (:meth:`~kalshi.store.Store.room_for`: written from memory, not spilled) or a writer's
    channel is full."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._senders = [store.sender(name) for name in _NAMES]

    async def put_all(self, rows: list[tuple[str, Row]]) -> None:
        for sender, group in zip(self._senders, _grouped(rows), strict=True):
            if group:
                await self._store.room_for(len(group))  # written from memory, not spilled
                try:
                    sender.send_batch_nowait(group)
                except trio.WouldBlock:
                    await sender.send_batch(group)

    async def aclose(self) -> None:
        for sender in self._senders:
            await sender.aclose()


class _PipeSink:
    """The :class:`~kalshi.pipeline.Sink` onto the pipe: rows grouped by table into
    batches of at least :data:`_BATCH_ROWS` (the rows of one call are kept together),
    each encoded and handed to the sending task; ``eager`` (a paced replay) sends what it
    has after every call."""

    def __init__(self, send: trio.MemorySendChannel[bytes], eager: bool) -> None:
        self._send = send
        self._eager = eager
        self._pending: list[list[Row]] = [[] for _ in _NAMES]
        self._encoder = msgspec.msgpack.Encoder()

    async def put_all(self, rows: list[tuple[str, Row]]) -> None:
        pending = self._pending
        for i, group in enumerate(_grouped(rows)):
            if group:
                batch = pending[i]
                batch += group
                if len(batch) >= _BATCH_ROWS:
                    await self._ship(i)
        if self._eager:
            await self.flush()

    async def flush(self) -> None:
        for i, batch in enumerate(self._pending):
            if batch:
                await self._ship(i)

    async def _ship(self, i: int) -> None:
        rows, self._pending[i] = self._pending[i], []
        await self._send.send(bytes((i,)) + self._encoder.encode(rows))


async def replay_through_process(
    run: Callable[[_PipeSink], Awaitable[object]],
    url: str,
    cfg: StoreConfig,
    *,
    copy_new: bool,
    eager: bool,
) -> dict[str, dict[str, int]]:
    """Start the writer process on ``url`` with ``cfg`` (the replay's spool already set),
    await ``run(sink)`` (the replay onto the pipe), end the rows and return the child's
    per-table counts: ``{"written"|"duplicate"|"updated"|"left": {table: rows}}``.

    Raises :class:`StoreError` with the child's own message when its store failed, or
    saying the writer process died (its exit code) and what that means for the rows.
    On any exit (normal, error, Ctrl-C) the pipe is closed and the child waited for
    (``cfg.shutdown_grace`` + 30 s, then killed)."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no Trio state forked
    here, there = ctx.Pipe()
    proc = ctx.Process(
        target=serve_batches,  # kalshi.store.process: the child imports the store only
        args=(there, url, cfg, copy_new),
        name="kalshi-replay-writers",
        daemon=True,
    )
    await trio.to_thread.run_sync(proc.start)
    there.close()
    died: list[BaseException] = []
    answer: tuple[str, Any] | None = None
    try:
        send, receive = trio.open_memory_channel[bytes](_IN_FLIGHT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_sender, here, receive, died, nursery.cancel_scope)
            async with send:
                sink = _PipeSink(send, eager)
                await run(sink)
                await sink.flush()
        if not died:
            try:
                answer = await trio.to_thread.run_sync(_finish, here)
            except (OSError, EOFError) as exc:
                died.append(exc)
        if died:
            answer = await trio.to_thread.run_sync(_last_word, here)
            if answer is None:
                code = await trio.to_thread.run_sync(_join, proc, 5.0)
                raise StoreError(
                    f"the replay's writer process died (exit code {code}): rows it had not"
                    " committed are not written; they are in the journal, and replaying it"
                    " again writes only those (rows already stored are skipped by their keys)"
                )
    finally:
        here.close()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_join, proc, float(cfg.shutdown_grace) + _JOIN_SLACK)
    assert answer is not None  # else StoreError above
    kind, body = answer
    if kind != "ok":
        raise StoreError(str(body))
    return dict(body)


async def _sender(
    conn: Connection,
    receive: trio.MemoryReceiveChannel[bytes],
    died: list[BaseException],
    scope: trio.CancelScope,
) -> None:
    """Batches onto the pipe in a worker thread (``send_bytes`` blocks while the child has
    not read: backpressure); a broken pipe is recorded and stops the replay."""
    async with receive:
        async for payload in receive:
            try:
                await trio.to_thread.run_sync(conn.send_bytes, payload)
            except OSError as exc:
                died.append(exc)
                scope.cancel()
                return


def _finish(conn: Connection) -> tuple[str, Any]:
    """The end of the rows; the child's answer once its store is drained and closed."""
    conn.send_bytes(b"")
    return _decode_answer(conn.recv_bytes())


def _last_word(conn: Connection) -> tuple[str, Any] | None:
    """The answer a child sent before it stopped reading (its store failed), if any."""
    try:
        if conn.poll(5.0):
            return _decode_answer(conn.recv_bytes())
    except (OSError, EOFError):
        pass
    return None


def _decode_answer(data: bytes) -> tuple[str, Any]:
    kind, body = msgspec.msgpack.decode(data)
    return str(kind), body


def _join(proc: multiprocessing.process.BaseProcess, timeout: float) -> int | None:
    """Wait for the child; kill it past ``timeout`` (it is stuck). Its exit code."""
    proc.join(timeout)
    if proc.exitcode is None:
        log.error("the replay's writer process did not stop within %.0f s: killed", timeout)
        proc.kill()
        proc.join()
    return proc.exitcode
