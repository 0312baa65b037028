"""Query the exported Parquet with DuckDB, without the database.

The deduplicator exports every table to ``<prefix><table>/date=YYYY-MM-DD/hour=HH/*.parquet``
in S3 (or ``s3_export.local_dir``). This script makes each table a DuckDB view over that
layout (through a pyarrow dataset, so it needs no DuckDB extension and no network beyond the
S3 endpoint), then runs your SQL. ``date`` and ``hour`` are columns too, and filters on them
skip whole partitions: months of data stay cheap to query.

    # the local S3 server of `just up` (or MinIO): S3_* from the environment / .env
    python examples/duckdb_query.py --s3 "SELECT count(*) FROM trades"
    # an export directory (kalshi export --local-dir /data/export writes /data/export/raw/...)
    python examples/duckdb_query.py --dir /data/export \\
        "SELECT ticker, count(*) AS n, sum(size) / 100 AS contracts FROM trades
         WHERE date >= '2026-11-01' GROUP BY ticker ORDER BY n DESC LIMIT 10"

Prices are integers in 1e-5 dollars, sizes in 1e-2 contracts (docs/data-model.md,
"Parquet export"): ``price / 100000`` is dollars. Times are ``TIMESTAMP WITH TIME ZONE``
(UTC, µs exact): ``epoch_us(exchange_ts)`` gives back the stored µs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import duckdb
import pyarrow.dataset as ds
from pyarrow import fs

DEFAULT_SQL = """
SELECT date, count(*) AS trades, count(DISTINCT ticker) AS markets, sum(size) AS size
FROM trades GROUP BY date ORDER BY date
"""


def _filesystem(args: argparse.Namespace) -> tuple[fs.FileSystem, str]:
    if args.dir:
        # the directory given to `kalshi export --local-dir` holds <prefix><table>/...;
        # a directory that already holds the table folders works too
        root = os.path.abspath(args.dir)
        under = os.path.join(root, args.prefix.strip("/"))
        return fs.LocalFileSystem(), under if os.path.isdir(under) and under != root else root
    endpoint = args.endpoint or os.environ.get("S3_ENDPOINT", "")
    scheme, _, host = endpoint.rpartition("://")
    s3 = fs.S3FileSystem(
        endpoint_override=host or None,
        scheme=scheme or "https",
        access_key=os.environ.get("S3_ACCESS_KEY") or None,
        secret_key=os.environ.get("S3_SECRET_KEY") or None,
        region=os.environ.get("S3_REGION", "us-east-1"),
    )
    bucket = args.bucket or os.environ.get("S3_BUCKET", "kalshi-data-local")
    return s3, f"{bucket}/{args.prefix.strip('/')}"


def connect(filesystem: fs.FileSystem, root: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per exported table found under ``root``."""
    db = duckdb.connect()
    tables = filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True))
    for info in sorted(tables, key=lambda i: i.path):
        if info.type != fs.FileType.Directory:
            continue
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        dataset = ds.dataset(
            info.path, filesystem=filesystem, format="parquet", partitioning="hive"
        )
        db.register(name, dataset)
    return db


def query(
    filesystem: fs.FileSystem, root: str, sql: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the export under ``root``: (column names, rows)."""
    db = connect(filesystem, root)
    result = db.execute(sql)
    columns = [d[0] for d in result.description]
    return columns, result.fetchall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--dir",
        help="an export directory (kalshi export --local-dir: its <prefix><table>/date=.../"
        "hour=.../ folders), or its <prefix> folder itself",
    )
    where.add_argument("--s3", action="store_true", help="S3: S3_ENDPOINT, S3_ACCESS_KEY, ...")
    parser.add_argument("--endpoint", help="S3 endpoint (default $S3_ENDPOINT)")
    parser.add_argument("--bucket", help="bucket (default $S3_BUCKET)")
    parser.add_argument(
        "--prefix", default="raw/", help="key prefix, in S3 or under --dir (default raw/)"
    )
    parser.add_argument("sql", nargs="?", default=DEFAULT_SQL, help="SQL over the tables")
    args = parser.parse_args(argv)
    filesystem, root = _filesystem(args)
    try:
        columns, rows = query(filesystem, root, args.sql)
    except duckdb.CatalogException as exc:
        # a table that was never exported: one line, with what is there
        found = sorted(connect(filesystem, root).execute("SHOW TABLES").fetchall())
        first = str(exc).splitlines()[0].removeprefix("Catalog Error: ")
        have = ", ".join(t for (t,) in found) or "none"
        print(f"error: {first} (exported tables under {root}: {have})", file=sys.stderr)
        return 1
    except duckdb.Error as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
