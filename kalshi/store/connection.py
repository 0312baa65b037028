"""Opening connections and mapping psycopg errors onto :mod:`kalshi.errors`.

Everything psycopg raises leaves ``kalshi.store`` as a :class:`StoreError`;
errors that mean "the server cannot be reached right now" become
:class:`DatabaseUnavailable`, which callers treat as transient.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from kalshi.errors import DatabaseUnavailable, StoreError

__all__ = [
    "CONNECT_TIMEOUT",
    "LOCK_PATIENCE",
    "NOT_MIGRATED",
    "connect",
    "is_data_error",
    "session_options",
    "translate",
    "translating",
    "try_lock",
]

CONNECT_TIMEOUT = 5
"""Seconds a connection attempt may take before the database counts as unavailable."""

LOCK_PATIENCE = 2.0
"""Seconds a session advisory lock held by another session is tried again before it counts
as held: a process that has just stopped closed its connection, but the server releases the
session's locks only when that backend exits, a few milliseconds after ``close()`` returned
(a gatherer or deduplicator restarted at once was refused by its own previous run)."""


def try_lock(conn: psycopg.Connection[Any], statement: str, params: tuple[Any, ...]) -> bool:
    """Run ``statement`` (a ``pg_try_advisory_lock(...)`` call) until it returns true or
    :data:`LOCK_PATIENCE` has passed; blocking (call it from a worker thread). psycopg
    errors propagate (wrap the call in :func:`translating`)."""
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        row = conn.execute(statement, params).fetchone()
        if row and row[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


# A table of ours missing (SQLSTATE 42P01): the one cause is a database never migrated.
NOT_MIGRATED = "the database is not migrated (not a kalshi database?): run `kalshi db migrate`"


def translate(exc: BaseException) -> StoreError:
    """The :class:`StoreError` that stands for a psycopg error; a missing table
    (``relation "x" does not exist``) adds :data:`NOT_MIGRATED`."""
    if isinstance(exc, StoreError):
        return exc
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        return DatabaseUnavailable(message)
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return StoreError(f"{message}: {NOT_MIGRATED}")
    return StoreError(message)


@contextmanager
def translating() -> Iterator[None]:
    """Re-raise psycopg errors inside the block as :class:`StoreError`."""
    try:
        yield
    except (psycopg.Error, OSError) as exc:
        raise translate(exc) from exc


def session_options(statement_timeout: float, lock_timeout: float) -> dict[str, str]:
    """``connect`` keyword arguments that set the session's ``statement_timeout`` and
    ``lock_timeout`` (seconds; 0 leaves the server's setting). Exceeding either fails the
    statement with SQLSTATE 57014 / 55P03, which :func:`translate` makes
    :class:`DatabaseUnavailable` (transient: retried, rows spooled)."""
    settings = [
        f"-c {name}={int(seconds * 1000)}"
        for name, seconds in (
            ("statement_timeout", statement_timeout),
            ("lock_timeout", lock_timeout),
        )
        if seconds > 0
    ]
    return {"options": " ".join(settings)} if settings else {}


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A new sync connection; raises :class:`DatabaseUnavailable` when unreachable."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    # A server that vanishes without closing the socket must still fail a write (~25 s)
    # rather than hang a writer thread forever.
    for key, value in _KEEPALIVE.items():
        kwargs.setdefault(key, value)
    with translating():
        return psycopg.connect(url, **kwargs)


def is_data_error(exc: BaseException) -> bool:
    """True when ``exc`` blames the rows themselves (a bad value), not the database.

    SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation), and
    values the client cannot encode (an int out of range, a wrong type).
    """
    if isinstance(exc, psycopg.errors.DataError | psycopg.errors.IntegrityError):
        return True
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        return state.startswith(("22", "23"))
    return isinstance(exc, TypeError | ValueError | OverflowError)
