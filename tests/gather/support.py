"""Helpers for gatherer tests: a config pointed at a simulator, and reading back books."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio
import yaml

from kalshi.book import OrderBook
from kalshi.config import GathererConfig, load_gatherer_config
from kalshi.store import connect_db


def sim_config(sim: Any, tmp_path: Path, db_url: str, **overrides: Any) -> GathererConfig:
    settings: dict[str, Any] = {
        "gatherer_id": "t1",
        "kalshi.rest_url": sim.rest_url,
        "kalshi.ws_url": sim.ws_url,
        "kalshi.api_key": sim.key_id,
        "kalshi.api_secret": sim.private_key_pem.decode(),
        "kalshi.rest_rate_limit": 200.0,
        "timescaledb.url": db_url,
        "websocket.orderbook_connections": 2,
        "websocket.trade_connections": 1,
        "websocket.ticker_connections": 1,
        "websocket.lifecycle_connections": 1,
        "websocket.reconnect_backoff": "100ms",
        "websocket.max_reconnect_backoff": "1s",
        "websocket.silence_timeout": "2s",
        "websocket.ping_interval": "500ms",
        "writers.orderbook_deltas.flush_interval": "100ms",
        "writers.trades.flush_interval": "100ms",
        "writers.orderbook_snapshots.flush_interval": "100ms",
        "writers.gaps.flush_interval": "100ms",
        "spool.dir": str(tmp_path / "spool"),
        "spool.dead_letter_dir": str(tmp_path / "dead"),
        "journal.dir": str(tmp_path / "journal"),
        "journal.compress": False,
        "snapshot_poller.enabled": False,
        "http.port": 0,
        "metrics.enabled": False,
        "relist_interval": "60s",
        "shutdown_grace": "10s",
    }
    settings.update(overrides)
    return load_gatherer_config(None, overrides=settings)


def gatherer_yaml(sim: Any, tmp_path: Path, db_url: str, **sections: Any) -> Path:
    """``kalshi gather``'s YAML config, written to ``tmp_path/gatherer.yaml``, for a gatherer
    of the simulator ``sim`` (its key written to ``tmp_path/key.pem``) storing into
    ``db_url``: two order-book connections and one of each other channel, spool and
    journal (uncompressed) under ``tmp_path``, no snapshot poller, HTTP on a free port, no
    metrics. Each of ``sections`` updates the section of its name (a mapping: its keys are
    merged in) or sets that top-level value."""
    key = tmp_path / "key.pem"
    key.write_bytes(sim.private_key_pem)
    config: dict[str, Any] = {
        "gatherer_id": "solo",
        "kalshi": {
            "rest_url": sim.rest_url,
            "ws_url": sim.ws_url,
            "api_key": sim.key_id,
            "api_secret": str(key),
            "rest_rate_limit": 200,
        },
        "timescaledb": {"url": db_url},
        "websocket": {
            "orderbook_connections": 2,
            "trade_connections": 1,
            "ticker_connections": 1,
            "lifecycle_connections": 1,
        },
        "spool": {"dir": str(tmp_path / "spool"), "dead_letter_dir": str(tmp_path / "dead")},
        "journal": {"dir": str(tmp_path / "journal"), "compress": False},
        "snapshot_poller": {"enabled": False},
        "http": {"port": 0},
        "metrics": {"enabled": False},
    }
    for name, value in sections.items():
        current = config.get(name)
        config[name] = {**current, **value} if isinstance(current, dict) else value
    path = tmp_path / "gatherer.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def gatherer_processes(config: Path) -> AsyncIterator[Callable[[], Awaitable[trio.Process]]]:
    """``start()`` runs ``kalshi gather --config CONFIG`` as a process of its own (stdout
    discarded) and returns it; every one still running when the block ends is killed, so a
    failed test leaves no gatherer behind."""
    command = [sys.executable, "-m", "kalshi", "gather", "--config", str(config)]
    procs: list[trio.Process] = []

    async def start() -> trio.Process:
        proc = await trio.lowlevel.open_process(command, stdout=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        with trio.CancelScope(shield=True):
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def wait_for(predicate: Any, step: float = 0.05) -> None:
    """Poll state owned by other tasks and processes (no event to wait on); the caller's
    ``fail_after`` bounds it."""
    while not predicate():  # noqa: ASYNC110 - polling a simulator and a database
        await trio.sleep(step)


def db_books(db_url: str) -> dict[str, OrderBook]:
    """Every market's book rebuilt from the database: its latest WebSocket snapshot plus
    the deltas received after it on the same connection, in frame order."""
    with connect_db(db_url) as db:
        snaps = db.query(
            "SELECT DISTINCT ON (ticker) ticker, yes_bids::text, no_bids::text, conn_id, frame_no"
            " FROM orderbook_snapshots WHERE source = 'ws'"
            " ORDER BY ticker, received_at DESC, conn_id DESC, frame_no DESC"
        )
        books: dict[str, OrderBook] = {}
        for ticker, yes, no, conn_id, frame_no in snaps:
            book = OrderBook(ticker)
            book.yes = {p: s for p, s in orjson.loads(yes)}
            book.no = {p: s for p, s in orjson.loads(no)}
            deltas = db.query(
                "SELECT side, price, size_delta FROM orderbook_deltas"
                " WHERE ticker = %s AND conn_id = %s AND frame_no > %s ORDER BY frame_no",
                (ticker, conn_id, frame_no),
            )
            for side, price, change in deltas:
                levels = book.yes if side else book.no
                size = levels.get(price, 0) + change
                if size:
                    levels[price] = size
                else:
                    levels.pop(price, None)
            books[ticker] = book
        return books
