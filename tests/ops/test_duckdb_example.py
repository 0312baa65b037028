"""examples/duckdb_query.py over the export layout, in a directory and in a real S3 server."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from kalshi.testing.s3server import S3Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = runpy.run_path(str(ROOT / "examples/duckdb_query.py"))
DAY = 86_400_000_000  # µs

# (date, hour, rows): trades as the export writes them, prices in 1e-5 $, sizes in 1e-2.
PARTITIONS = [
    ("2026-11-01", "00", [("A-1", 42000, 1000), ("A-1", 43000, 500), ("B-2", 99000, 100)]),
    ("2026-11-01", "13", [("B-2", 98000, 250)]),
    ("2026-11-02", "07", [("A-1", 41000, 300), ("C-3", 1000, 10000)]),
]


def _table(rows: list[tuple[str, int, int]], day: int) -> pa.Table:
    return pa.table(
        {
            "exchange_ts": pa.array(
                [1_793_491_200_000_000 + day * DAY + i for i in range(len(rows))]
            ),
            "ticker": [r[0] for r in rows],
            "price": pa.array([r[1] for r in rows], pa.int32()),
            "size": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


def _write(filesystem: fs.FileSystem, root: str) -> None:
    for day, (date, hour, rows) in enumerate(PARTITIONS):
        directory = f"{root}/trades/date={date}/hour={hour}"
        filesystem.create_dir(directory, recursive=True)
        pq.write_table(_table(rows, day), f"{directory}/part-00000.parquet", filesystem=filesystem)
        with filesystem.open_output_stream(f"{directory}/_manifest.json") as manifest:
            manifest.write(b'{"parts": ["part-00000.parquet"]}')  # as kalshi.dedup.export


EXPECTED_DAYS = "\n".join(
    [
        "date\ttrades\tmarkets\tsize",
        "2026-11-01\t4\t2\t1850",
        "2026-11-02\t2\t2\t10300",
        "",
    ]
)


def test_default_query_over_an_export_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(fs.LocalFileSystem(), str(tmp_path))
    EXAMPLE["main"](["--dir", str(tmp_path)])
    assert capsys.readouterr().out == EXPECTED_DAYS


def test_partition_filters_and_exact_integers(tmp_path: Path) -> None:
    _write(fs.LocalFileSystem(), str(tmp_path))
    columns, rows = EXAMPLE["query"](
        fs.LocalFileSystem(),
        str(tmp_path),
        "SELECT ticker, hour, sum(price * size) AS notional FROM trades "
        "WHERE date = '2026-11-01' GROUP BY ticker, hour ORDER BY ticker, hour",
    )
    assert columns == ["ticker", "hour", "notional"]
    assert rows == [("A-1", 0, 63_500_000), ("B-2", 0, 9_900_000), ("B-2", 13, 24_500_000)]


def test_default_query_over_s3(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = s3_server
    s3.create_bucket("export")
    filesystem: Any = fs.S3FileSystem(
        endpoint_override=s3.endpoint.removeprefix("http://"),
        scheme="http",
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        region=s3.region,
    )
    _write(filesystem, "export/raw")
    monkeypatch.setenv("S3_ENDPOINT", s3.endpoint)
    monkeypatch.setenv("S3_ACCESS_KEY", s3.access_key)
    monkeypatch.setenv("S3_SECRET_KEY", s3.secret_key)
    monkeypatch.setenv("S3_BUCKET", "export")
    EXAMPLE["main"](["--s3"])
    assert capsys.readouterr().out == EXPECTED_DAYS


def test_a_table_never_exported_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(fs.LocalFileSystem(), str(tmp_path))
    code = EXAMPLE["main"](["--dir", str(tmp_path), "SELECT count(*) FROM orderbook_deltas"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        "error: Table with name orderbook_deltas does not exist!"
        f" (exported tables under {tmp_path}: trades)\n"
    )
