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

from kalshi.store.connection import connect

__all__ = ["ConnectionPool", "PooledConnection"]


class PooledConnection:
    """A connection plus the staging tables already created in its session."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.staged: set[str] = set()


class ConnectionPool:
    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.size = max(1, size)
        self.limiter = trio.CapacityLimiter(self.size)
        self._idle: list[PooledConnection] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[PooledConnection]:
        """Borrow a connection (blocking; call from a worker thread)."""
        with self._lock:
            pooled = self._idle.pop() if self._idle else None
        if pooled is None:
            pooled = PooledConnection(connect(self.url, autocommit=True))
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
            if healthy and not pooled.conn.closed and not pooled.conn.broken:
                with self._lock:
                    self._idle.append(pooled)
            else:
                pooled.conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.conn.close()
