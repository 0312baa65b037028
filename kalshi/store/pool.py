"""A small pool of sync psycopg connections for worker threads.

Threads are admitted by :attr:`ConnectionPool.limiter` (a ``trio.CapacityLimiter`` of
``max_connections``), so the pool never holds more connections than that. A connection
that failed with a connection-level error is discarded, not reused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import trio

from kalshi.store.connection import connect, session_options

__all__ = ["ConnectionPool", "PooledConnection"]


class PooledConnection:
    """A connection plus the staging tables already created in its session (each with the
    rows it took in since it was last truncated, see :func:`~kalshi.store.staging.fill_stage`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.staged: dict[str, int] = {}


class ConnectionPool:
    """``statement_timeout``/``lock_timeout`` (seconds, 0 = none) bound every statement of
    the pool's sessions: a hung or locked table fails the write (then retried as an
    unavailable database) instead of holding a worker thread forever."""

    def __init__(
        self, url: str, size: int, *, statement_timeout: float = 0.0, lock_timeout: float = 0.0
    ) -> None:
        self.url = url
        self.size = max(1, size)
        self.options = session_options(statement_timeout, lock_timeout)
        self.limiter = trio.CapacityLimiter(self.size)
        self._idle: list[PooledConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[PooledConnection]:
        """Borrow a connection (blocking; call from a worker thread)."""
        with self._lock:
            pooled = self._idle.pop() if self._idle else None
        if pooled is None:
            pooled = PooledConnection(connect(self.url, autocommit=True, **self.options))
        healthy = False
        try:
            yield pooled
            healthy = True
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except BaseException:
            healthy = not pooled.conn.broken
            raise
        finally:
            keep = healthy and not pooled.conn.closed and not pooled.conn.broken
            with self._lock:
                # A thread abandoned at shutdown returns its connection after close().
                keep = keep and not self._closed
                if keep:
                    self._idle.append(pooled)
            if not keep:
                pooled.conn.close()

    def close(self) -> None:
        """Close the idle connections; a connection still in use is closed when returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.conn.close()
