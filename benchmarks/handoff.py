"""The rows' hand-off alone: CPU µs a row from the pipeline's sink to a sealed batch, with
the watermark read as the gatherer reads it; in one process, no socket, no database.

    python benchmarks/handoff.py [--rows 200000] [--queued 40000] [--before-tree DIR]
                                 [--smoke] [--results DIR]

One order-book delta row a frame through ``RowSink.put_ready`` into the store's
``orderbook_deltas`` writer (the shipped batch size, 5 000), its collector sealing batches,
a yield every 8 frames (the receive loop yields once per socket read), and
``Store.complete_before`` every 20 000 rows (once a second at 20 000 msgs/s). Sealed
batches stand for the database's work: they are dropped as committed once more than
``--queued`` rows wait (the gatherer at full size queues tens of thousands). CPU time of the
process (one thread), best of three; ``--before-tree``: the same in another checkout's
``kalshi``, in alternation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments, trees

ROOT = Path(__file__).resolve().parent.parent
_YIELD_EVERY = 8
_WATERMARK_EVERY = 20_000


async def _one(rows: int, queued: int, spool: str) -> float:
    from kalshi.config import Duration, SpoolConfig, StoreConfig, WriterConfig, WritersConfig
    from kalshi.models.rows import DeltaRow
    from kalshi.pipeline import RowSink
    from kalshi.store.writer import Store

    small = WriterConfig(1000, Duration(1.0))
    cfg = StoreConfig(
        writers=WritersConfig(
            trades=small,
            orderbook_deltas=WriterConfig(5000, Duration(0.5)),
            tickers=small,
            orderbook_snapshots=small,
            market_lifecycle=small,
            markets=small,
            gaps=small,
        ),
        spool=SpoolConfig(dir=spool, memory_rows=10**9, dead_letter_dir=spool + "-dead"),
    )
    store = Store("postgresql://unused", cfg)
    writer = store._writers["orderbook_deltas"]
    base = 1_796_000_000_000_000
    made = [
        [
            (
                "orderbook_deltas",
                DeltaRow(
                    exchange_ts=base + n,
                    received_at=base + n + 900,
                    gatherer_id="g",
                    ticker=f"T{n % 2000}",
                    side=True,
                    price=n % 99 + 1,
                    size_delta=10,
                    conn_id=1,
                    frame_no=n,
                    sid=1,
                    seq=n,
                ),
            )
        ]
        for n in range(rows)
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.collect)
        sink = RowSink({"orderbook_deltas": store.sender("orderbook_deltas")})
        start = time.process_time()
        for n, frame in enumerate(made):
            if sink.put_ready(frame) < 1:
                await sink.put_all(frame)
            if n % _YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()
            if n % _WATERMARK_EVERY == 0:
                store.complete_before(base + n)
            while writer.memory_rows > queued:  # committed: the flushers' bookkeeping
                batch = writer.memory.popleft()
                writer.first.pop(batch.seq, None)
                writer.oldest.pop(batch.seq, None)
                writer.memory_rows -= len(batch.rows)
        spent = time.process_time() - start
        nursery.cancel_scope.cancel()
    return spent / rows * 1e6


def child(spec: str) -> None:
    args = json.loads(spec)
    with tempfile.TemporaryDirectory() as tmp:
        best = min(trio.run(_one, args["rows"], args["queued"], f"{tmp}/{n}") for n in range(3))
    print(json.dumps({"us": best}))


def run(tree: str, rows: int, queued: int) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = (tree or str(ROOT)) + os.pathsep + env.get("PYTHONPATH", "")
    spec = json.dumps({"rows": rows, "queued": queued})
    out = subprocess.run(
        [sys.executable, __file__, "--child", spec],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["us"])


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    parser = arguments(__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queued", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before-tree", default="", help="a checkout to compare with")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.queued, args.rounds = 20_000, 5_000, 1
    runs = trees(args.before_tree)
    results = Results(
        "handoff", {"rows": args.rows, "queued rows": args.queued, "rounds": args.rounds}
    )
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for label, tree in runs:
            us = run(tree, args.rows, args.queued)
            print(label, us, flush=True)
            best[label] = min(us, best.get(label, us))
    results.table(
        "Rows' hand-off, sink to sealed batch (CPU µs a row, one delta row a frame)",
        ["run", "µs a row"],
        [[label, us] for label, us in best.items()],
        note="RowSink.put_ready, the writer's collector, a yield every 8 frames and the"
        " watermark every 20 000 rows; best of three in a process, best of the rounds.",
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
