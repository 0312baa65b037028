"""Dedup fixtures: extra migrated databases on the session's PostgreSQL, and a helper that
writes a scripted recording into a gatherer database through the real store."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from kalshi.config import (
    DedupConfig,
    GathererConfig,
    GathererSource,
    HttpConfig,
    MetricsConfig,
    ProductionConfig,
    SpoolConfig,
    SyncConfig,
)
from kalshi.store import EmbeddedPostgres, connect_db, open_store
from kalshi.testing.scripted import Recording

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


async def write_recording(url: str, rec: Recording, spool: Path) -> None:
    """Write ``rec`` into the gatherer database at ``url`` with :func:`open_store`."""
    cfg = GathererConfig(
        gatherer_id=rec.gatherer_id,
        spool=SpoolConfig(dir=str(spool / "spool"), dead_letter_dir=str(spool / "dead")),
    )
    with trio.fail_after(60):
        async with open_store(url, cfg) as store:
            for table, rows in rec.tables().items():
                async with store.sender(table) as send:
                    for row in rows:
                        await send.send(row)


def dedup_config(production: str, gatherers: dict[str, str], **sync: object) -> DedupConfig:
    return DedupConfig(
        gatherers=tuple(GathererSource(g, url) for g, url in gatherers.items()),
        production=ProductionConfig(url=production),
        sync=SyncConfig(**sync),  # type: ignore[arg-type]
        metrics=MetricsConfig(enabled=False),
        http=HttpConfig(port=0),
    )
