"""The store in a process of its own, fed batches over a pipe: the writer process of
``kalshi replay --db --writers process`` (:mod:`kalshi.replay.writer_process` starts it,
sends the batches and reads the answer; its docstring gives the wire and the guarantees).

Its own module, outside :mod:`kalshi.replay`, so that the process imports only the store
(``spawn`` imports the module of its target: the replay package would add about 0.2 s of
CPU to its start-up, docs/performance.md).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import trio

from kalshi.config import StoreConfig
from kalshi.errors import KalshiError, StoreError
from kalshi.models.rows import Row
from kalshi.store.schema import TABLES
from kalshi.store.writer import Store, open_store

__all__ = ["drain_store", "serve_batches", "store_counts"]

log = logging.getLogger("kalshi.store")

_NAMES = tuple(TABLES)  # a batch's first byte: its table's index here


def serve_batches(conn: Connection, url: str, cfg: StoreConfig, copy_new: bool) -> None:
    """The writer process's body: batches from ``conn`` into :func:`open_store` on ``url``
    with ``cfg``; the answer (``["ok", counts]`` or ``["error", message]``) back on
    ``conn`` (:mod:`kalshi.replay.writer_process` gives the wire). Returns after answering;
    raises what is not a :class:`KalshiError` of the store (a bug)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The interpreter's own objects (modules, functions, types: about 70 000) out of the
    # garbage collector's reach: the rows' allocations start its passes, and each full pass
    # walked them all (1.3-2.5 µs a frame of this process, docs/performance.md).
    gc.collect()
    gc.freeze()
    try:
        answer: list[Any] = ["ok", trio.run(_child, conn, url, cfg, copy_new)]
    except (KalshiError, BaseExceptionGroup) as exc:
        message = _store_failure(exc)
        if message is None:
            raise  # a bug: its traceback on stderr, the replay says the process died
        answer = ["error", message]
    # OSError: the replay stopped (Ctrl-C), nobody is waiting for the counts
    with contextlib.suppress(OSError):
        conn.send_bytes(msgspec.msgpack.encode(answer))
    conn.close()


async def _child(
    conn: Connection, url: str, cfg: StoreConfig, copy_new: bool
) -> dict[str, dict[str, int]]:
    decoders = [_decoder(TABLES[name].row_type) for name in _NAMES]
    stopped: list[str] = []
    async with open_store(url, cfg, watermark=False, copy_new=copy_new) as store:
        senders = [store.sender(name) for name in _NAMES]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_on_sigterm, nursery.cancel_scope, stopped)
            while True:
                data = await trio.to_thread.run_sync(_receive, conn, abandon_on_cancel=True)
                if not data:
                    break
                i = data[0]
                rows = decoders[i].decode(memoryview(data)[1:])
                await store.room_for(len(rows))  # written from memory, not spilled
                try:  # the batch whole: one hand-over, not one per row
                    senders[i].send_batch_nowait(rows)
                except trio.WouldBlock:
                    await senders[i].send_batch(rows)
            nursery.cancel_scope.cancel()
        for sender in senders:
            await sender.aclose()
        if not stopped:
            await drain_store(store, float(cfg.shutdown_grace))
    if stopped:
        raise StoreError(
            "the replay's writer process was stopped (SIGTERM): the rows it had received"
            " were committed or spooled; the rest are in the journal (replay it again)"
        )
    return store_counts(store)


def _store_failure(exc: BaseException) -> str | None:
    """The messages of the :class:`KalshiError` inside ``exc`` (through Trio's exception
    groups), joined with ``; ``; ``None`` when anything else is inside."""
    if isinstance(exc, BaseExceptionGroup):
        lines = [_store_failure(sub) for sub in exc.exceptions]
        if any(line is None for line in lines):
            return None
        return "; ".join(dict.fromkeys(line for line in lines if line))
    return str(exc) if isinstance(exc, KalshiError) else None


def _decoder(row_type: type[Row]) -> msgspec.msgpack.Decoder[list[Row]]:
    """Decodes a batch of one table into its Row type (a NamedTuple from an array)."""
    return msgspec.msgpack.Decoder(list[row_type])  # type: ignore[valid-type]


def _receive(conn: Connection) -> bytes:
    """The next message; ``b""`` (the end) when this process's parent closed the pipe."""
    try:
        return conn.recv_bytes()
    except (EOFError, OSError):
        return b""


async def _on_sigterm(scope: trio.CancelScope, stopped: list[str]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            stopped.append("SIGTERM")
            scope.cancel()
            return


def store_counts(store: Store) -> dict[str, dict[str, int]]:
    """Per table, the rows the database acknowledged as new (``written``), as already
    stored (``duplicate``), as replacing a stored market (``updated``), and the rows not
    written (``left``: in memory, spooled or dead-lettered)."""
    counts: dict[str, dict[str, int]] = {"written": {}, "duplicate": {}, "updated": {}, "left": {}}
    for table, t in store.stats().tables.items():
        counts["written"][table] = t.rows_written
        counts["duplicate"][table] = t.rows_duplicate
        counts["updated"][table] = t.rows_updated
        counts["left"][table] = t.queue_rows + t.spool_rows + t.dead_letters
    return counts


async def drain_store(store: Store, patience: float) -> None:
    """Wait until the store is drained, as long as the database keeps acknowledging rows
    within ``patience`` seconds (a deadline on progress, not a synchronisation)."""
    while True:
        before = _acknowledged(store)
        with trio.move_on_after(patience):
            await store.drain()
            return
        if _acknowledged(store) == before:
            log.warning("the database acknowledged nothing for %.0f s; stopping", patience)
            return


def _acknowledged(store: Store) -> int:
    return sum(
        t.rows_written + t.rows_duplicate + t.rows_updated for t in store.stats().tables.values()
    )
