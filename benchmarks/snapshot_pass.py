"""One snapshot-poller pass over the whole exchange at the Basic tier's REST budget: every
market of a 250 000-market simulator fetched 100 books per request
(``GET /markets/orderbooks``, kalshi-api.md §4.5) at 20 requests/s (Basic: 200 read tokens/s
at 10 a request, §4.9), the simulator enforcing the same token bucket, by the poller's own
:func:`~kalshi.gather.rest_tasks.snapshot_pass` (``--in-flight`` requests in flight, rows
into a sink that counts them). ``--rest-latency S``: the simulator answers each request S
seconds late (a far or loaded exchange). Writes ``benchmarks/results/snapshot-pass.json``.

    python benchmarks/snapshot_pass.py [--markets N] [--rate RPS] [--rest-latency S]
        [--in-flight N] [--smoke] [--results DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments

from kalshi.auth import Signer, load_private_key
from kalshi.config import GathererConfig
from kalshi.gather.context import GatherContext
from kalshi.gather.rest_tasks import ORDERBOOKS_PER_REQUEST, snapshot_pass
from kalshi.models.rows import TABLE_COLUMNS, Row
from kalshi.net import RestClient, get_transport, system_wall_us
from kalshi.pipeline import FrameProcessor, RowSink
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US


async def run(
    markets: int, rate: float, latency: float, in_flight: int
) -> tuple[int, int, int, float]:
    """One pass; returns (books stored, requests, retries after 429 or 5xx, seconds)."""
    async with open_sim_exchange(
        markets=markets, active=50, rate=50.0, seed=1, port=0, start_us=PINNED_START_US,
        tier="basic", rest_latency=latency,
    ) as sim, trio.open_nursery() as nursery:  # fmt: skip
        sim.engine.pause()
        tickers = sorted(sim.universe.info(i).ticker for i in range(markets))
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        stored = [0]
        channels = {}

        async def count(receive: trio.MemoryReceiveChannel[Row]) -> None:
            async for _ in receive:
                stored[0] += 1

        for table in TABLE_COLUMNS:
            send, receive = trio.open_memory_channel[Row](10_000)
            channels[table] = send
            nursery.start_soon(count, receive)
        cfg = GathererConfig()
        ctx = GatherContext(
            cfg=cfg,
            signer=signer,
            connector=get_transport(cfg.websocket.transport),
            processor=FrameProcessor("bench"),
            journal=None,
            sink=RowSink(channels),
            wall_us=system_wall_us,
        )
        async with RestClient(sim.rest_url, signer, rate=rate, timeout=30) as rest:
            start = time.perf_counter()
            await snapshot_pass(ctx, rest, tickers, in_flight)
            took = time.perf_counter() - start
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
            return stored[0], rest.requests, rest.retries, took


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--markets", type=int, default=250_000)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--rest-latency", type=float, default=0.0, help="s before each answer")
    parser.add_argument("--in-flight", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    markets = 2_000 if args.smoke else args.markets
    books, requests, retries, took = trio.run(
        run, markets, args.rate, args.rest_latency, args.in_flight
    )
    results = Results(
        "snapshot-pass",
        {
            "markets": markets,
            "rate_limit_rps": args.rate,
            "per_request": ORDERBOOKS_PER_REQUEST,
            "rest_latency_s": args.rest_latency,
            "in_flight": args.in_flight,
        },
    )
    results.table(
        "One snapshot-poller pass at the Basic tier's read budget",
        ["books", "requests", "retries (429 or 5xx)", "pass (s)", "budget (s)"],
        [[books, requests, retries, round(took, 1), markets / ORDERBOOKS_PER_REQUEST / args.rate]],
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
