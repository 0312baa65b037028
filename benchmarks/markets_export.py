"""The deduplicator's memory for the ``markets`` export (``Exporter.export_markets``):
the peak resident memory (``VmHWM``) of a fresh process that exports a production
``markets`` table of N simulator markets (the REST Market objects of ``kalshi sim``,
~1.3 KB of JSON each) to a local directory, less its peak before the export.

    python benchmarks/markets_export.py [--markets N] [--before PYTHON] [--results DIR]

``--before``: another environment's interpreter (e.g. a wrapper setting PYTHONPATH to an
older checkout) whose export is measured on the same table, for a before/after figure;
``--before-label`` names its row. The children run outside any checkout, so each imports
its own ``kalshi``. An embedded
PostgreSQL is started in a temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PEAK_COLUMNS, Results, add_before, arguments, export_peaks, production_db


def fill(url: str, markets: int) -> None:
    import orjson

    from kalshi.sim.universe import Universe
    from kalshi.store.query import connect_db

    universe = Universe(markets, 1_796_000_000_000_000, seed=1)
    with connect_db(url) as db, db._conn.cursor() as cur:
        with cur.copy(
            "COPY markets (ticker, event_ticker, status, market_type, title, open_time,"
            " close_time, updated_at, gatherer_id, payload) FROM STDIN"
        ) as copy:
            for i in range(markets):
                body = universe.market_json(universe.info(i))
                copy.write_row(
                    (
                        body["ticker"],
                        body["event_ticker"],
                        body["status"],
                        "binary",
                        body["title"],
                        1,
                        2,
                        3,
                        "g1",
                        orjson.dumps(body).decode(),
                    )
                )
        db._conn.commit()


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--markets", type=int, default=250_000)
    add_before(parser)
    args = parser.parse_args()
    markets = 2_000 if args.smoke else args.markets

    from kalshi.dedup.export import MARKETS_READ_ROWS

    results = Results(  # the load average before the run
        "markets-export",
        {"markets": markets, "MARKETS_READ_ROWS": MARKETS_READ_ROWS, "before": args.before},
    )
    with production_db("kalshi-markets-export-") as (url, root):
        fill(url, markets)
        run = "trio.run(lambda: exporter.export_markets(force=True))"
        rows = export_peaks(run, url, root, args.before, args.before_label)
    assert all(r[1] == markets for r in rows), rows
    results.table(
        "Peak RSS of one markets export (MiB, VmHWM of a fresh process) and its wall time (s)",
        PEAK_COLUMNS,
        rows,
        note="the deduplicator's export_markets(force=True) of simulator markets",
    )
    results.write(args.results)


if __name__ == "__main__":
    main()
