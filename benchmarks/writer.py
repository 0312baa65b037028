"""Writer throughput: rows/s through ``open_store`` (channel -> batches -> binary COPY into a
staging table -> INSERT ... ON CONFLICT) next to a bare binary COPY of the same rows
straight into the same table, in the same run, and their ratio (goal >= 0.7).

    python benchmarks/writer.py [--rows N] [--batch-size N] [--url URL]

Without --url an embedded PostgreSQL is started in a temporary directory (default
settings, fsync on) and removed afterwards.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import trio

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments

from kalshi.config import Duration, GathererConfig, SpoolConfig, WriterConfig, WritersConfig
from kalshi.models.rows import DeltaRow, Row, TradeRow
from kalshi.store import EmbeddedPostgres, migrate, open_store
from kalshi.store.schema import TABLES

T0 = 1_795_553_041_000_000


def deltas(n: int, run: int) -> list[Row]:
    return [
        DeltaRow(
            exchange_ts=T0 + i // 4,
            received_at=T0 + i,
            gatherer_id="bench",
            ticker=f"KXHIGHNY-26NOV25-B{i % 97}",
            side=i % 2 == 0,
            price=(i * 37) % 100_001,
            size_delta=-1_350 + i % 500,
            conn_id=run,
            frame_no=i + 1,
            sid=2,
            seq=i + 1,
        )
        for i in range(n)
    ]


def trades(n: int, run: int) -> list[Row]:
    return [
        TradeRow(
            exchange_ts=T0 + i // 2,
            received_at=T0 + i,
            gatherer_id="bench",
            ticker=f"KXHIGHNY-26NOV25-B{i % 97}",
            trade_id=f"879217f6-553e-7222-{run:04d}-{i:012d}",
            price=(i * 37) % 100_001,
            size=200 + i % 1000,
            taker_side=i % 3 == 0,
            is_block_trade=False,
            source="ws",
            conn_id=run,
            frame_no=i + 1,
            seq=i + 1,
        )
        for i in range(n)
    ]


def bare_copy(url: str, table: str, rows: list[Row], batch_size: int) -> float:
    spec = TABLES[table]
    columns = ", ".join(spec.columns)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table}")
        statement = f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"
        start = time.perf_counter()
        for offset in range(0, len(rows), batch_size):
            with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                copy.set_types(list(spec.stage_types))
                for row in rows[offset : offset + batch_size]:
                    copy.write_row(row)
        return len(rows) / (time.perf_counter() - start)


def through_writer(
    url: str, table: str, rows: list[Row], cfg: GathererConfig, *, nowait: bool
) -> float:
    """Rows/s from the first send until every row is committed.

    ``nowait``: the producer hands rows over with ``send_nowait`` (falling back to
    ``await send`` when the channel is full) instead of one ``await send`` per row; this
    measures the writer without Trio's two scheduler round trips per ``send``.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table}")

    async def main() -> float:
        async with open_store(url, cfg.store) as store:
            start = time.perf_counter()
            async with store.sender(table) as send:
                for row in rows:
                    if nowait:
                        try:
                            send.send_nowait(row)
                            continue
                        except trio.WouldBlock:
                            pass
                    await send.send(row)
            await store.committed()  # the database acknowledged every row
            return len(rows) / (time.perf_counter() - start)

    return trio.run(main)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.repeats = 5_000, 1

    scratch = Path(tempfile.mkdtemp(prefix="kalshi-bench-"))
    scratch.chmod(0o755)
    server = None
    try:
        url = args.url
        if not url:
            server = EmbeddedPostgres(scratch / "pg")
            url = server.start()
        migrate(url)
        results = Results(
            "writer",
            {"rows per run": args.rows, "tuned batch_size": args.batch_size,
             "best of": args.repeats},
        )  # fmt: skip
        shipped = GathererConfig().writers
        spool = SpoolConfig(
            dir=str(scratch / "spool"), dead_letter_dir=str(scratch / "dead-letter")
        )
        tuned_writer = WriterConfig(args.batch_size, Duration(0.05))
        configs = {
            "default": GathererConfig(spool=spool),
            "tuned": GathererConfig(
                writers=WritersConfig(trades=tuned_writer, orderbook_deltas=tuned_writer),
                spool=spool,
            ),
        }
        out = []
        for table, make in (("orderbook_deltas", deltas), ("trades", trades)):
            rows = make(args.rows, 1)
            default_batch = (
                shipped.orderbook_deltas if table == "orderbook_deltas" else shipped.trades
            )
            for name, cfg in configs.items():
                batch = default_batch.batch_size if name == "default" else args.batch_size
                bare = ours = awaited = 0.0
                for _ in range(args.repeats):  # interleaved, so load drift hits all three
                    bare = max(bare, bare_copy(url, table, rows, batch))
                    ours = max(ours, through_writer(url, table, rows, cfg, nowait=True))
                    awaited = max(awaited, through_writer(url, table, rows, cfg, nowait=False))
                out.append([table, name, batch, bare, ours, ours / bare, awaited, awaited / bare])
        results.table(
            "Batch writer next to a bare binary COPY of the same rows in batches of the same"
            " size (rows/s)",
            ["table", "config", "batch", "bare COPY", "writer (send_nowait)", "ratio",
             "writer (await send)", "ratio"],
            out,
        )  # fmt: skip
        results.write(args.results)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
