"""Helpers shared by the benchmark scripts: timing loops, a machine line, and the JSON
every benchmark writes (``benchmarks/results/<name>.json``) from which
``benchmarks/report.py`` generates the tables of docs/performance.md."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

GOLD = Path(
    os.environ.get(
        "KALSHI_GOLD", Path(__file__).resolve().parent.parent / "tests" / "data" / "kalshi-gold15m"
    )
)
"""The third-party gold capture: the repository's copy (identical to ../shared/data), or
``$KALSHI_GOLD``."""

__all__ = [
    "EXPORT_CHILD",
    "RESULTS",
    "Results",
    "add_before",
    "arguments",
    "export_peaks",
    "machine",
    "peak_rss_mib",
    "postgres",
    "production_db",
    "rate",
    "scratch",
    "speed",
]

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """One line describing where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{datetime.now(UTC):%Y-%m-%d} · {os.cpu_count()} cores ({cpu}) · {mem_gib:.0f} GiB · "
        f"Python {platform.python_version()}"
    )


# one orderbook_delta as the exchange sends it (kalshi-api.md §5.2): the speed reference's frame
_REFERENCE_FRAME = (
    b'{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"KXBTC15M-26DEC01-B95",'
    b'"market_id":"9b0f6b58-0b4a-4c36-8f4e-0d3c1f4f5b6e","price_dollars":"0.4200",'
    b'"delta_fp":"-13.00","side":"yes","ts":"2026-12-01T12:00:00.123456Z"}}'
)


def speed() -> int:
    """The machine's speed when a run starts: bare ``orjson.loads`` of one delta frame, frames
    a second (best of 3 × 0.3 s). The same code on the same 2-core VM has measured 0.57× to 1×
    its best speed within one day (2026-12-01/02: 907 145 against 1 586 357 frames/s of the
    decode benchmark's capture deltas, load average under 1 both times), which a load
    average does not show; a run's figures compare with another's only next to this."""
    loads, frames = orjson.loads, [_REFERENCE_FRAME] * 1000

    def one() -> int:
        for frame in frames:
            loads(frame)
        return len(frames)

    return round(rate(one, min_seconds=0.3))


def commit(tree: str | Path | None = None) -> str:
    """The short commit of ``tree``'s checkout (default: this one); "" without git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=tree or Path(__file__).parent,
        )
    except OSError:
        return ""
    return out.stdout.strip()


def trees(before_tree: str) -> list[tuple[str, str]]:
    """(label, checkout) of the runs of a ``--before-tree`` comparison: the other checkout
    first when given ("" is this tree)."""
    here = [(f"this tree ({commit()})", "")]
    if not before_tree:
        return here
    return [(f"before ({commit(before_tree)})", before_tree), *here]


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: described by the first paragraph of its ``doc``, with
    ``--smoke`` (a brief run that only proves the script works, `just bench-smoke`) and
    ``--results DIR`` (where the JSON goes); the script adds its own."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a brief run, sizes cut down")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON")
    return parser


def add_before(parser: argparse.ArgumentParser) -> None:
    """``--before PYTHON`` (another environment's interpreter, e.g. a wrapper setting
    PYTHONPATH to an older checkout, measured on the same data first) and
    ``--before-label`` (its row's name), for :func:`export_peaks`."""
    parser.add_argument("--before", help="interpreter of the environment to compare with")
    parser.add_argument("--before-label", default="--before", help="its row's name")


class Results:
    """The figures of one run: tables (title, columns, rows) plus the run's configuration,
    written as one JSON file. Every figure in docs/performance.md comes from such a file."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.data: dict[str, Any] = {
            "benchmark": name,
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": machine(),
            "load average at start": round(os.getloadavg()[0], 2),  # other work on the cores
            "speed reference at start": speed(),  # the machine's own speed (speed())
            "commit": commit(),
            "config": config,
            "tables": [],
        }

    def table(
        self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = ""
    ) -> None:
        self.data["tables"].append(
            {
                "title": title,
                "columns": list(columns),
                "rows": [list(r) for r in rows],
                "note": note,
            }
        )
        print(f"\n{title}")
        print("  " + " | ".join(columns))
        for row in rows:
            print("  " + " | ".join(format_value(v) for v in row))

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        path.write_bytes(orjson.dumps(self.data, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"wrote {path}")
        return path


def replace_block(doc: Path, begin: str, end: str, section: str, heading: str) -> None:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) in place of the
    marked block of ``doc``; appended under ``## heading`` when the markers are missing."""
    text = doc.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
    doc.write_text(text)


def format_value(value: Any) -> str:
    """A figure as the tables print it: integers with thin spaces, ratios to 2 places."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{round(value):,}".replace(",", " ")
        return f"{value:.2f}"
    return str(value)


def rate(fn: Callable[[], int], *, min_seconds: float = 1.0) -> float:
    """Items per second of ``fn`` (which returns how many items it processed), best of 3."""
    best = 0.0
    for _ in range(3):
        items = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_seconds:
            items += fn()
        best = max(best, items / elapsed)
    return best


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


EXPORT_CHILD = """
import sys, time, trio
from kalshi.config import S3Config, parse_duration
from kalshi.dedup.export import Exporter

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

exporter = Exporter(sys.argv[1], S3Config(enabled=True, local_dir=sys.argv[2],
                    window=parse_duration("1h")))
exporter._reader.markets_mark()  # connected, like a running deduplicator
before = hwm()
start = time.perf_counter()
rows = {run}
seconds = time.perf_counter() - start
import kalshi
print(rows, before, hwm(), seconds, kalshi.__file__)
"""
"""A fresh process's export to a directory (argv: the production URL, the directory, then
the script's own): prints the rows written, its peak RSS (MiB, ``VmHWM``) before and after
the export, the export's wall seconds and the ``kalshi`` it imported. ``{run}``: the
export, an expression giving the rows written."""


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A new temporary directory named with ``prefix`` (open to PostgreSQL's user, which
    an embedded server run as root is), removed at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres(url: str, where: Path) -> Iterator[str]:
    """``url``; when empty, an embedded PostgreSQL's in ``where``, stopped at the end."""
    if url:
        yield url
        return
    from kalshi.store import EmbeddedPostgres

    server = EmbeddedPostgres(where)
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def production_db(prefix: str) -> Iterator[tuple[str, Path]]:
    """A migrated database ``production`` on an embedded PostgreSQL in a new temporary
    directory (named with ``prefix``): its URL and the directory, removed at the end."""
    from kalshi.store import EmbeddedPostgres, connect_db, migrate

    with scratch(prefix) as root:
        server = EmbeddedPostgres(root / "pg")
        server.start()
        try:
            with connect_db(server.url_for("postgres")) as db:
                db.execute('CREATE DATABASE "production"')
            url = server.url_for("production")
            migrate(url)
            yield url, root
        finally:
            server.stop()


PEAK_COLUMNS = ["code", "rows", "peak before", "peak after", "export's peak", "seconds"]
"""The columns of :func:`export_peaks`' rows."""


def export_peaks(
    run: str, url: str, root: Path, before: str | None, label: str, *args: str
) -> list[list[Any]]:
    """The :data:`EXPORT_CHILD` of ``run`` in this interpreter and, first, ``before`` (another
    environment's, named ``label``), each exporting ``url`` to ``root/out`` (emptied first):
    a row each, ``[code, rows, peak before, peak after, the export's peak]`` (MiB) and the
    export's wall seconds (:data:`PEAK_COLUMNS`)."""
    runs = [("this commit", sys.executable)]
    if before:
        runs.insert(0, (label, before))
    out = root / "out"
    rows: list[list[Any]] = []
    for name, python in runs:
        shutil.rmtree(out, ignore_errors=True)
        got = subprocess.run(
            [python, "-c", EXPORT_CHILD.replace("{run}", run), url, str(out), *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,  # not a checkout: each interpreter imports its own kalshi
        )
        written, start, peak, seconds, where = got.stdout.split()
        print(f"{python}: {where}")
        rows.append(
            [
                name,
                int(written),
                round(float(start)),
                round(float(peak)),
                round(float(peak) - float(start)),
                round(float(seconds), 1),
            ]
        )
    return rows
