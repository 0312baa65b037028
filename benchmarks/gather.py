"""End-to-end gatherer throughput against the simulator's blast mode, next to the bare
receive loop of each transport in the same run; and peak RSS at 250 000 markets.

    python benchmarks/gather.py [--events 200000] [--markets 100]

The simulator runs in its own process (as the real exchange would be elsewhere); the
gatherer writes into an embedded PostgreSQL in a temporary directory, with its journal on.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, peak_rss_mib

from kalshi.auth import Signer, load_private_key
from kalshi.config import load_gatherer_config
from kalshi.gather.service import Gatherer
from kalshi.net import RestClient, get_transport, system_wall_us
from kalshi.store import EmbeddedPostgres, migrate
from kalshi.wire import encode_command, subscribe_cmd

PORT = 8791


def start_sim(events: int, markets: int, key: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kalshi",
            "sim",
            "--blast",
            "--blast-events",
            str(events),
            "--markets",
            str(markets),
            "--active",
            str(markets),
            "--port",
            str(PORT),
            "--tier",
            "none",
            "--key-file",
            str(key),
            "--lifecycle-every",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"key id\s+(\S+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("the simulator did not start")


async def tickers(rest_url: str) -> list[str]:
    async with RestClient(rest_url, rate=1000) as rest:
        return [m.ticker async for page in rest.market_pages() for m in page]


async def bare_receive(
    transport: str, url: str, signer: Signer, markets: list[str]
) -> tuple[int, float]:
    """Frames and seconds from the first to the last frame of one blast."""
    connect = get_transport(transport)
    headers = signer.headers("GET", url, system_wall_us() // 1000)
    count, first, last = 0, 0.0, 0.0
    async with connect(url, headers, 1 << 24) as ws:
        await ws.send(encode_command(subscribe_cmd(1, ["orderbook_delta"], markets)))
        while True:
            with trio.move_on_after(2.0) as idle:
                await ws.receive()
            if idle.cancelled_caught:
                break
            count += 1
            last = time.perf_counter()
            if count == 1:
                first = last
    return count, last - first


async def gatherer_run(cfg_overrides: dict[str, object], db_url: str) -> tuple[int, float, float]:
    """Frames processed, seconds to process them, seconds until every row was written."""
    cfg = load_gatherer_config(None, overrides=cfg_overrides)
    signer = Signer(cfg.kalshi.api_key, load_private_key(cfg.kalshi.api_secret))
    gatherer = Gatherer(cfg, db_url, signer=signer)
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        await nursery.start(gatherer.run)
        conn = gatherer.layout.connections[0]  # type: ignore[union-attr]
        while conn.messages == 0:  # noqa: ASYNC110 - polling the task under measurement
            await trio.sleep(0.001)
        start = time.perf_counter()  # from the first frame: listing and connecting excluded
        seen, last_change = 0, time.perf_counter()
        while time.perf_counter() - last_change < 2.0:
            await trio.sleep(0.05)
            if conn.messages != seen:
                seen, last_change = conn.messages, time.perf_counter()
        processed = last_change - start
        store = gatherer.store
        assert store is not None
        frames = conn.messages - 2  # subscribed + ok replies are not rows
        while True:
            tables = store.stats().tables
            written = (
                tables["orderbook_deltas"].rows_written + tables["orderbook_snapshots"].rows_written
            )
            if written >= frames:
                break
            await trio.sleep(0.05)
        stored = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return conn.messages, processed, stored


def registry_rss(markets: int, books: int) -> float:
    """Peak RSS (MiB) of a registry of ``markets`` markets and ``books`` live books."""
    from kalshi.gather.pipeline import FrameProcessor
    from kalshi.gather.registry import MarketRegistry
    from kalshi.models.book import BookSnapshot
    from kalshi.models.market import Market

    registry = MarketRegistry("bench")
    registry.upsert(
        (
            Market(
                ticker=f"KXBENCH-26NOV25-T{i}",
                event_ticker=f"KXBENCH-26NOV25-{i // 20}",
                status="active",
                title="benchmark market",
            )
            for i in range(markets)
        ),
        0,
    )
    processor = FrameProcessor("bench")
    from kalshi.book import OrderBook

    for i in range(books):
        snap = BookSnapshot(
            f"KXBENCH-26NOV25-T{i}",
            "",
            tuple((p * 1000, 1000 + p) for p in range(1, 21)),
            tuple((p * 1000, 500 + p) for p in range(1, 21)),
        )
        processor.books[snap.ticker] = OrderBook.from_snapshot(snap)
    return peak_rss_mib()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--markets", type=int, default=100)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # as root the embedded server runs as nobody
        key = Path(tmp) / "key.pem"
        sim, key_id = start_sim(args.events, args.markets, key)
        try:
            rest_url = f"http://127.0.0.1:{PORT}/trade-api/v2"
            ws_url = f"ws://127.0.0.1:{PORT}/trade-api/ws/v2"
            signer = Signer(key_id, load_private_key(str(key)))
            markets = trio.run(tickers, rest_url)
            bare: dict[str, float] = {}
            for transport in ("websockets", "trio-websocket"):
                count, seconds = trio.run(bare_receive, transport, ws_url, signer, markets)
                bare[transport] = count / seconds
                rate = bare[transport]
                print(f"bare receive  {transport:15} {count:>8} frames  {rate:>10,.0f} msgs/s")
            with EmbeddedPostgres(Path(tmp) / "pg") as pg:
                migrate(pg.url)
                for transport in ("websockets", "trio-websocket"):
                    overrides = {
                        "gatherer_id": f"bench-{transport}",
                        "kalshi.rest_url": rest_url,
                        "kalshi.ws_url": ws_url,
                        "kalshi.api_key": key_id,
                        "kalshi.api_secret": str(key),
                        "kalshi.rest_rate_limit": 1000.0,
                        "websocket.transport": transport,
                        "websocket.orderbook_connections": 1,
                        "websocket.trade_connections": 0,
                        "websocket.ticker_connections": 0,
                        "websocket.lifecycle_connections": 0,
                        "websocket.markets_per_command": 1000,
                        "writers.orderbook.batch_size": 5000,
                        "spool.dir": f"{tmp}/spool-{transport}",
                        "spool.dead_letter_dir": f"{tmp}/dead-{transport}",
                        "journal.dir": f"{tmp}/journal-{transport}",
                        "snapshot_poller.enabled": False,
                        "http.port": 0,
                        "metrics.enabled": False,
                    }
                    frames, processed, stored = trio.run(gatherer_run, overrides, pg.url)
                    e2e = frames / stored
                    print(
                        f"gatherer      {transport:15} {frames:>8} frames  "
                        f"{frames / processed:>10,.0f} msgs/s processed  "
                        f"{e2e:>10,.0f} msgs/s into PostgreSQL  "
                        f"ratio {e2e / bare[transport]:.2f} of bare receive"
                    )
        finally:
            sim.terminate()
            sim.wait()
    print(f"peak RSS so far {peak_rss_mib():.0f} MiB")
    print(
        f"registry 250,000 markets + 20,000 books: peak RSS {registry_rss(250_000, 20_000):.0f} MiB"
    )


if __name__ == "__main__":
    main()
