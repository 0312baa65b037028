"""A prototype measured, not a feature: ``kalshi replay`` into PostgreSQL with the writers in
a second process, next to the shipped single-process replay, same journal, same server.

    python benchmarks/replay_split.py [--frames N] [--markets M] [--smoke] [--results DIR]

The prototype (issue 19's "writers fed from the journal", here fed by the replay): this
process reads the journal and runs the pipeline (``Replayer.feed_all``), groups the rows by
table into batches of the shipped sizes (order book 5 000, the rest 1 000) and sends each
batch as MessagePack (``msgspec``) over a pipe; the writer process decodes it and COPYs it
straight into its table (binary COPY, one transaction a batch) and answers with its row
count once every batch is committed. A full pipe blocks the sender (backpressure). It has
none of the store's guarantees (no spool, no dead letters, no retry, a fresh database
only): it measures what the split buys on this machine, for the decision in
docs/performance.md. Each table's row count is checked equal to the shipped replay's.
"""

from __future__ import annotations

import itertools
import multiprocessing
import shutil
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec
import trio
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments
from replay import frames, into_db, server_cpu, write

from kalshi.journal import read_journal
from kalshi.replay import Replayer
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.store.connection import connect
from kalshi.store.schema import TABLES
from kalshi.store.staging import copy_rows

BATCH = {"orderbook_deltas": 5_000}  # the shipped default sizes; others 1 000


def writer_main(conn: Connection, url: str) -> None:
    """The writer process: batches in, COPYed; the row count out once all are committed."""
    decoder = msgspec.msgpack.Decoder()
    written = 0
    with connect(url, autocommit=True) as db:
        while payload := conn.recv_bytes():
            name, _, body = payload.partition(b"\0")
            table = name.decode()
            spec = TABLES[table]
            rows = decoder.decode(body)
            with db.transaction(), db.cursor() as cur:
                copy_rows(cur, spec, rows, sql.Identifier(table))
            written += len(rows)
    conn.send((written, time.process_time()))  # a forked child's CPU time starts at 0


def split_run(files: list[Path], url: str) -> tuple[int, float, float]:
    """The prototype's replay; returns (rows written, seconds until all are committed,
    the writer process's CPU seconds)."""
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=writer_main, args=(there, url))
    proc.start()
    start = time.perf_counter()
    encoder = msgspec.msgpack.Encoder()
    pending: dict[str, list[object]] = {t: [] for t in TABLES}
    replayer = Replayer()
    items = read_journal(files)
    while batch := list(itertools.islice(items, 200)):
        for table, row in replayer.feed_all(batch):
            rows = pending[table]
            rows.append(row)
            if len(rows) >= BATCH.get(table, 1_000):
                here.send_bytes(table.encode() + b"\0" + encoder.encode(rows))
                pending[table] = []
    for table, rows in pending.items():
        if rows:
            here.send_bytes(table.encode() + b"\0" + encoder.encode(rows))
    here.send_bytes(b"")
    written, writer_cpu = here.recv()
    seconds = time.perf_counter() - start
    proc.join()
    return written, seconds, writer_cpu


def stored(url: str) -> dict[str, int]:
    with connect_db(url) as db:
        return {t: db.count(t) for t in TABLES}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.markets, args.rounds = 3_000, 20, 1
    results = Results(
        "replay-split",
        {"frames": args.frames, "markets": args.markets, "rounds": args.rounds},
    )
    tmp = Path(tempfile.mkdtemp(prefix="kalshi-replay-split-"))
    tmp.chmod(0o755)
    rows: list[list[object]] = []
    try:
        raw = frames(args.frames, args.markets)
        files = trio.run(write, tmp / "journal", raw)
        n = len(raw)
        server = EmbeddedPostgres(tmp / "pg", settings={"fsync": "off"})
        server.start()
        try:
            migrate(server.url)
            expected: dict[str, int] = {}
            for round_no in range(1, args.rounds + 1):
                for how in ("one process (shipped)", "writers in a second process (prototype)"):
                    with connect_db(server.url) as db:
                        db.execute(f"TRUNCATE {', '.join(TABLES)}")
                    before = server_cpu(server.data_dir)
                    cpu = time.process_time()
                    if how.startswith("one"):
                        start = time.perf_counter()
                        written = into_db(files, server.url, tmp)
                        seconds = time.perf_counter() - start
                        writer_cpu = None
                    else:
                        written, seconds, writer_cpu = split_run(files, server.url)
                    ours = (time.process_time() - cpu) * 1e6 / n
                    theirs = (server_cpu(server.data_dir) - before) * 1e6 / n
                    counts = stored(server.url)
                    assert sum(counts.values()) == written, (counts, written)
                    expected = expected or counts
                    assert counts == expected, (how, counts, expected)
                    writer = None if writer_cpu is None else writer_cpu * 1e6 / n
                    rows.append([round_no, how, n / seconds, written, ours, writer, theirs])
        finally:
            server.stop()
        results.table(
            "Replay into PostgreSQL: one process against writers in a second process",
            ["round", "how", "frames/s", "rows", "this process CPU µs a frame",
             "writer process CPU µs a frame", "server CPU µs a frame"],
            rows,
            note="CPU time a frame; the machine's two cores are shared with the server.",
        )  # fmt: skip
        results.write(args.results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
