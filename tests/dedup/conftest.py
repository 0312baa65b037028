"""Dedup fixtures: extra migrated databases on the session's PostgreSQL (helpers are in
``dedup_support.py``)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from kalshi.store import EmbeddedPostgres, connect_db

_counter = itertools.count(1)


@pytest.fixture
def make_db(pg_server: EmbeddedPostgres, _migrated_template: str) -> Iterator[Callable[..., str]]:
    """A factory of fresh migrated databases (``make_db(name=None)``), dropped at the end."""
    names: list[str] = []

    def make(name: str | None = None) -> str:
        name = name or f"dedup_{os.getpid()}_{next(_counter)}"
        with connect_db(pg_server.url_for("postgres")) as db:
            db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_template}"')
        names.append(name)
        return pg_server.url_for(name)

    yield make
    with connect_db(pg_server.url_for("postgres")) as db:
        for name in names:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
