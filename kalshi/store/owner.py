"""One live gatherer per ``gatherer_id`` and database: a PostgreSQL session advisory lock.

Two gatherers with the same id writing one database store every delta twice and make
false ``merge_hole`` rows in production (issue 18). The store of a live gatherer holds a
session advisory lock keyed by its id for its whole life, on a connection of its own; a
second one is refused with :class:`StoreError`. A database that cannot be reached at start
does not stop the gatherer (its rows spool): the claim is then skipped, with a warning, and
the journal's lock (``<journal dir>/<gatherer_id>/.lock``) still guards one machine.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from kalshi.errors import DatabaseUnavailable, StoreError
from kalshi.store.connection import connect, translating, try_lock

__all__ = ["GATHERER_LOCK_CLASS", "claim_gatherer_id"]

log = logging.getLogger("kalshi.store")

GATHERER_LOCK_CLASS = 0x6B61  # "ka": the first key of pg_advisory_lock(int, int)


def claim_gatherer_id(url: str, gatherer_id: str) -> psycopg.Connection[Any] | None:
    """Hold the lock of ``gatherer_id`` on ``url``; the caller closes the returned
    connection to release it. ``None`` when the database cannot be reached now. Raises
    :class:`StoreError` when another live session still holds it after
    :data:`~kalshi.store.connection.LOCK_PATIENCE` (a previous run's closed session lets go
    of it within milliseconds)."""
    try:
        conn = connect(url, autocommit=True)
    except DatabaseUnavailable as exc:
        log.warning(
            "gatherer id %r not claimed on the database (unreachable: %s)", gatherer_id, exc
        )
        return None
    try:
        with translating():
            taken = try_lock(
                conn,
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                (GATHERER_LOCK_CLASS, gatherer_id),
            )
        if not taken:
            raise StoreError(
                f"gatherer_id {gatherer_id!r} is already recording into this database (another"
                " live gatherer holds it); give each gatherer its own gatherer_id"
            )
    except BaseException:
        conn.close()
        raise
    return conn
