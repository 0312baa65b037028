"""Peak RSS of one gatherer process with the whole exchange: 250 000 markets registered,
the default connection layout (144 order-book, 2 ticker, 2 trade, 2 lifecycle: 150
connections) live, and a book for every market subscribed (the simulator sends a snapshot
for each: more than the 20 000 live books of the goal).

    python benchmarks/memory.py [--markets 250000] [--active 20000] [--smoke] [--results DIR]

The simulator runs in its own process; this process runs only the gatherer (shipped
default configuration except the exchange's address and key, no metrics server and no
snapshot poller) into an embedded PostgreSQL, so its peak RSS is the gatherer's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments, peak_rss_mib

from kalshi.auth import Signer, load_private_key
from kalshi.config import load_gatherer_config
from kalshi.gather.service import Gatherer
from kalshi.store import EmbeddedPostgres, migrate

PORT = 8793


def start_sim(markets: int, active: int, key: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kalshi", "sim", "--markets", str(markets), "--active",
         str(active), "--rate", "2000", "--port", str(PORT), "--tier", "none", "--key-file",
         str(key), "--lifecycle-every", "0", "--start", "2026-11-25"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"key id\s+(\S+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("the simulator did not start")


async def run(
    overrides: dict[str, object], db_url: str, active: int, deadline: float
) -> dict[str, float | None]:
    cfg = load_gatherer_config(None, overrides=overrides)
    signer = Signer(cfg.kalshi.api_key, load_private_key(cfg.kalshi.api_secret))
    gatherer = Gatherer(cfg, db_url, signer=signer)
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(gatherer.run)
        layout = gatherer.layout
        assert layout is not None
        books = gatherer.processor.books
        count, still, ready = -1, 0, None
        with trio.move_on_after(deadline):
            while still < 6:  # every connection live and the number of books steady for 3 s
                await trio.sleep(0.5)
                live = all(c.state == "live" for c in layout.connections)
                still = still + 1 if live and len(books) == count and count >= active else 0
                count = len(books)
            ready = time.perf_counter() - start - 3
            await trio.sleep(10)  # traffic on every live book
        nursery.cancel_scope.cancel()
    return {
        "markets": len(gatherer.registry.markets),
        "connections": len(layout.connections),
        "live": sum(c.state == "live" for c in layout.connections),
        "reconnects": sum(c.reconnects for c in layout.connections),
        "books": len(books),
        "ready_s": ready,
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--markets", type=int, default=250_000)
    parser.add_argument("--active", type=int, default=20_000)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds to reach steady")
    args = parser.parse_args()
    if args.smoke:
        args.markets, args.active = 2_000, 200
    results = Results("memory", {"markets": args.markets, "traded markets": args.active})
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # as root the embedded server runs as nobody
        key = Path(tmp) / "key.pem"
        sim, key_id = start_sim(args.markets, args.active, key)
        try:
            with EmbeddedPostgres(Path(tmp) / "pg") as pg:
                migrate(pg.url)
                overrides: dict[str, object] = {
                    "gatherer_id": "bench-memory",
                    "kalshi.rest_url": f"http://127.0.0.1:{PORT}/trade-api/v2",
                    "kalshi.ws_url": f"ws://127.0.0.1:{PORT}/trade-api/ws/v2",
                    "kalshi.api_key": key_id,
                    "kalshi.api_secret": str(key),
                    "kalshi.rest_rate_limit": 1000.0,
                    "spool.dir": f"{tmp}/spool",
                    "spool.dead_letter_dir": f"{tmp}/dead",
                    "journal.dir": f"{tmp}/journal",
                    "snapshot_poller.enabled": False,
                    "http.port": 0,
                    "metrics.enabled": False,
                }
                seen = trio.run(run, overrides, pg.url, args.active, args.deadline)
        finally:
            sim.terminate()
            sim.wait()
    results.table(
        "One gatherer process, default layout (peak RSS MiB; goal <= 1 024)",
        [
            "markets registered",
            "connections",
            "live at the end",
            "reconnects",
            "live books",
            "seconds to steady (– not within the deadline)",
            "peak RSS MiB",
        ],
        [
            [
                seen["markets"],
                seen["connections"],
                seen["live"],
                seen["reconnects"],
                seen["books"],
                seen["ready_s"],
                peak_rss_mib(),
            ]
        ],
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
