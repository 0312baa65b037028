"""The deduplicator's memory for one window of the book stream (``Exporter.export_window``
of ``orderbook_deltas``): the peak resident memory (``VmHWM``) of a fresh process that
exports one hour of a production ``orderbook_deltas`` table of N deltas (spread over M
markets, each market's stream starting in the hour) to a local directory, less its peak
before the export.

    python benchmarks/book_export.py [--deltas N] [--markets M] [--before PYTHON] [--results DIR]

``--before``: another environment's interpreter (e.g. a wrapper setting PYTHONPATH to an
older checkout) whose export is measured on the same table, for a before/after figure;
``--before-label`` names its row. The children run outside any checkout, so each imports
its own ``kalshi``. An embedded PostgreSQL is started in a temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PEAK_COLUMNS, Results, add_before, arguments, export_peaks, production_db

HOUR_US = 3_600_000_000
START = 1_796_000_400_000_000 - 1_796_000_400_000_000 % HOUR_US  # an hour's start (µs)


def fill(url: str, deltas: int, markets: int) -> None:
    """``deltas`` merged deltas of ``markets`` markets (seq 1.. per market), stamped evenly
    over the hour from :data:`START`, each one level's change (prices 1..99 cents)."""
    from kalshi.dedup.production import PRODUCTION_INDEXES
    from kalshi.store.query import connect_db

    step = HOUR_US // (deltas // markets + 1)
    with connect_db(url) as db, db._conn.cursor() as cur:
        with cur.copy(
            "COPY orderbook_deltas (exchange_ts, received_at, gatherer_id, ticker, side,"
            " price, size_delta, conn_id, frame_no, seq, sid) FROM STDIN"
        ) as copy:
            for i in range(deltas):
                market, seq = i % markets, i // markets + 1
                at = START + seq * step + market
                price = 1_000 * (1 + (i * 7) % 99)
                copy.write_row(
                    (
                        at,
                        at + 500,
                        "g1",
                        f"KXBENCH-{market:05d}",
                        i % 2 == 0,
                        price,
                        100 * (1 + i % 5),
                        1,
                        i,
                        seq,
                        1,
                    )
                )
        db._conn.commit()
        for ddl in PRODUCTION_INDEXES.values():
            db.execute(ddl)
        db.execute("ANALYZE orderbook_deltas")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--deltas", type=int, default=1_000_000)
    parser.add_argument("--markets", type=int, default=2_000)
    add_before(parser)
    args = parser.parse_args()
    deltas = 20_000 if args.smoke else args.deltas

    from kalshi.dedup.export import READ_ROWS

    results = Results(  # the load average before the run
        "book-export",
        {"deltas": deltas, "markets": args.markets, "READ_ROWS": READ_ROWS, "before": args.before},
    )
    with production_db("kalshi-book-export-") as (url, root):
        fill(url, deltas, args.markets)
        run = "trio.run(exporter.export_window, 'orderbook_deltas', int(sys.argv[3])).rows"
        rows = export_peaks(run, url, root, args.before, args.before_label, str(START))
        assert [r[1] for r in rows] == [rows[-1][1]] * len(rows), rows  # the same rows
    results.table(
        "Peak RSS of one book-stream window's export (MiB, VmHWM of a fresh process) and its"
        " wall time (s)",
        PEAK_COLUMNS,
        rows,
        note="the deduplicator's export_window('orderbook_deltas', hour) of an hour of deltas",
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
