"""The gatherer's CPU a message, all its threads: the figure a shared machine measures
fairly (issue 20: one gatherer at 20 000 msgs/s needs it small).

    python benchmarks/gather_cpu.py [--events 300000] [--markets 2000] [--rounds 2]
                                    [--before-tree DIR] [--smoke] [--results DIR]

One simulator in blast mode (its own process) streams its pre-generated order-book
messages to each gatherer run as fast as the socket takes them; each run is a process of
its own (the shipped default configuration, as in ``benchmarks/gather.py``: journal on,
one order-book connection, an embedded PostgreSQL shared by the runs) and measures, from
its first frame until the database acknowledged every order-book row, the CPU time of the
whole process (``getrusage``: user + system, every thread: the event loop, the writers'
COPY threads, the journal's compression) and of its event-loop thread alone, each over
the frames. Wall time does not enter the figure, so other work on the cores moves it
little (caches and clock speed still do: the load average and the speed reference are
recorded with it). ``--before-tree DIR``: a checkout of another commit, measured in
alternation with this one (``--rounds`` of each; each run imports ``kalshi`` from its
tree through ``PYTHONPATH``); the row of each is its best round.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments, trees
from gather import PORT, overrides, start_sim

ROOT = Path(__file__).resolve().parent.parent


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(cfg_overrides: dict[str, object], db_url: str) -> dict[str, float]:
    """One gatherer in this process: frames, seconds and CPU seconds (process, event-loop
    thread) from the first frame until every order-book row is acknowledged."""
    from kalshi.auth import Signer, load_private_key
    from kalshi.config import load_gatherer_config
    from kalshi.gather.service import Gatherer

    cfg = load_gatherer_config(None, overrides=cfg_overrides)
    signer = Signer(cfg.kalshi.api_key, load_private_key(cfg.kalshi.api_secret))
    gatherer = Gatherer(cfg, db_url, signer=signer)
    async with trio.open_nursery() as nursery:
        await nursery.start(gatherer.run)
        conn = gatherer.layout.connections[0]  # type: ignore[union-attr]
        while conn.messages == 0:  # noqa: ASYNC110 - polling the task under measurement
            await trio.sleep(0.001)
        start, cpu, loop = time.perf_counter(), _process_cpu(), time.thread_time()
        store = gatherer.store
        assert store is not None
        books = ("orderbook_deltas", "orderbook_snapshots")
        peak = 0
        seen, last_change = 0, time.perf_counter()
        while True:
            await trio.sleep(0.01)
            tables = store.stats().tables
            queued = sum(tables[t].queue_rows + tables[t].spool_rows for t in books)
            peak = max(peak, queued)
            if conn.messages != seen:
                seen, last_change = conn.messages, time.perf_counter()
            elif queued == 0 and time.perf_counter() - last_change > 1.0:
                break
        done = time.perf_counter()
        cpu, loop = _process_cpu() - cpu, time.thread_time() - loop
        nursery.cancel_scope.cancel()
    return {
        "frames": conn.messages,
        "seconds": done - start,
        "cpu": cpu,
        "loop": loop,
        "peak_queue": peak,
    }


def child(spec: str) -> None:
    args = json.loads(spec)
    print(json.dumps(trio.run(_measure, args["overrides"], args["db_url"])))


def run(tree: str, cfg: dict[str, object], db_url: str, profile: str = "") -> dict[str, float]:
    """One gatherer process importing ``kalshi`` from ``tree`` (this script's by default);
    ``profile``: under ``py-spy record`` (every thread, raw collapsed stacks) into that
    file (the figures then include py-spy's pauses: for where the time goes, not how much)."""
    env = dict(os.environ)  # this script's own tree unless told: not an installed kalshi
    env["PYTHONPATH"] = (tree or str(ROOT)) + os.pathsep + env.get("PYTHONPATH", "")
    spy = ["py-spy", "record", "-r", "200", "--threads", "-f", "raw", "-o", profile, "--"]
    out = subprocess.run(
        [
            *(spy if profile else []),
            sys.executable,
            __file__,
            "--child",
            json.dumps({"overrides": cfg, "db_url": db_url}),
        ],
        env=env,
        cwd=tree or ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    parser = arguments(__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--markets", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before-tree", default="", help="a checkout to compare with")
    parser.add_argument("--profile", default="", help="directory: py-spy each run there")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.markets, args.rounds = 5_000, 10, 1
    from kalshi.store import EmbeddedPostgres, migrate

    runs = trees(args.before_tree)
    results = Results(
        "gather-cpu",
        {"blast events": args.events, "markets": args.markets, "rounds": args.rounds,
         "journal": "on (zstd)"},
    )  # fmt: skip
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # as root the embedded server runs as nobody
        key = Path(tmp) / "key.pem"
        sim, key_id = start_sim(args.events, args.markets, key)
        try:
            rest_url = f"http://127.0.0.1:{PORT}/trade-api/v2"
            ws_url = f"ws://127.0.0.1:{PORT}/trade-api/ws/v2"
            with EmbeddedPostgres(Path(tmp) / "pg") as pg:
                migrate(pg.url)
                for n in range(args.rounds):
                    for i, (label, tree) in enumerate(runs):
                        cfg = overrides("websockets", f"cpu-{n}-{i}", tmp, rest_url, ws_url,
                                        key_id, key)  # fmt: skip
                        spy = f"{args.profile}/{n}-{i}.txt" if args.profile else ""
                        got = run(tree, cfg, pg.url, spy)
                        got["load"] = os.getloadavg()[0]
                        print(label, got, flush=True)
                        if label not in best or got["cpu"] / got["frames"] < (
                            best[label]["cpu"] / best[label]["frames"]
                        ):
                            best[label] = got
        finally:
            sim.terminate()
            sim.wait()
    results.table(
        "Gatherer CPU a message, all threads (µs a frame; simulator blast into PostgreSQL)",
        ["run", "frames", "process µs", "event-loop µs", "msgs/s", "peak queued rows",
         "load average"],
        [
            [label, r["frames"], r["cpu"] / r["frames"] * 1e6, r["loop"] / r["frames"] * 1e6,
             r["frames"] / r["seconds"], r["peak_queue"], round(r["load"], 2)]
            for label, r in best.items()
        ],
        note="from the first frame until the database acknowledged every order-book row;"
        " process: user + system CPU of every thread of the gatherer's process; best of the"
        " rounds; msgs/s over the same span (wall time: moves with the machine's load).",
    )  # fmt: skip
    results.write(args.results)


if __name__ == "__main__":
    main()
