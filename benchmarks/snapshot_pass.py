"""One snapshot-poller pass over the whole exchange at the Basic tier's REST budget: every
market of a 250 000-market simulator fetched 100 books per request
(``GET /markets/orderbooks``, kalshi-api.md §4.5) at 20 requests/s (Basic: 200 read tokens/s
at 10 a request, §4.9), the simulator enforcing the same token bucket. Writes
``benchmarks/results/snapshot-pass.json``.

    python benchmarks/snapshot_pass.py [--markets N] [--rate RPS] [--smoke] [--results DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, add_common

from kalshi.auth import Signer, load_private_key
from kalshi.gather.rest_tasks import ORDERBOOKS_PER_REQUEST
from kalshi.net import RestClient
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US


async def run(markets: int, rate: float) -> tuple[int, int, int, float]:
    """One pass; returns (books, requests, retries after 429 or 5xx, seconds)."""
    async with open_sim_exchange(
        markets=markets, active=50, rate=50.0, seed=1, port=0, start_us=PINNED_START_US,
        tier="basic",
    ) as sim:  # fmt: skip
        sim.engine.pause()
        tickers = [sim.universe.info(i).ticker for i in range(markets)]
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        async with RestClient(sim.rest_url, signer, rate=rate, timeout=30) as rest:
            books = 0
            start = time.perf_counter()
            for i in range(0, len(tickers), ORDERBOOKS_PER_REQUEST):
                books += len(await rest.orderbooks(tickers[i : i + ORDERBOOKS_PER_REQUEST]))
            took = time.perf_counter() - start
            return books, rest.requests, rest.retries, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=250_000)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    add_common(parser)
    args = parser.parse_args()
    markets = 2_000 if args.smoke else args.markets
    books, requests, retries, took = trio.run(run, markets, args.rate)
    results = Results(
        "snapshot-pass",
        {"markets": markets, "rate_limit_rps": args.rate, "per_request": ORDERBOOKS_PER_REQUEST},
    )
    results.table(
        "One snapshot-poller pass at the Basic tier's read budget",
        ["books", "requests", "retries (429 or 5xx)", "pass (s)", "budget (s)"],
        [[books, requests, retries, round(took, 1), markets / ORDERBOOKS_PER_REQUEST / args.rate]],
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
