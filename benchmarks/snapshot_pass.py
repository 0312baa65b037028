"""One snapshot-poller pass over the whole exchange at the Basic tier's REST budget: every
market of a 250 000-market simulator fetched 100 books per request
(``GET /markets/orderbooks``, kalshi-api.md §4.5) at 20 requests/s (Basic: 200 read tokens/s
at 10 a request, §4.9), the simulator enforcing the same token bucket. Writes
``benchmarks/results/snapshot-pass.json``.

    python benchmarks/snapshot_pass.py [MARKETS] [RATE]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import trio

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from kalshi.auth import Signer, load_private_key
from kalshi.gather.rest_tasks import ORDERBOOKS_PER_REQUEST
from kalshi.net import RestClient
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US


async def run(markets: int, rate: float) -> dict[str, object]:
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
            return {
                "machine": machine(),
                "markets": markets,
                "books": books,
                "rate_limit_rps": rate,
                "requests": rest.requests,
                "retries_429_or_5xx": rest.retries,
                "pass_seconds": round(took, 1),
                "budget_seconds": markets / ORDERBOOKS_PER_REQUEST / rate,
            }


def main() -> None:
    markets = int(sys.argv[1]) if len(sys.argv) > 1 else 250_000
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    result = trio.run(run, markets, rate)
    out = Path(__file__).parent / "results" / "snapshot-pass.json"
    out.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
