"""`just bench`: run every benchmark (each writes ``benchmarks/results/<name>.json``), then
generate the tables of docs/performance.md from those files.

    python benchmarks/report.py            # run them all, then generate
    python benchmarks/report.py --no-run   # generate from the JSON already there
    python benchmarks/report.py --smoke    # `just bench-smoke`: each briefly, JSON to a
                                           # scratch directory, docs untouched

The prose of docs/performance.md stays as written (where it quotes a goal's figure, it is
the one the Goals table shows: rewrite it with each rerun); the section between the
``bench:begin`` / ``bench:end`` markers is replaced by one table per JSON table, each under
its benchmark's run line (date, commit, machine, configuration).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, format_value, replace_block

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# soak: `just soak`, minutes long, in docs/reliability.md; scale: `just scale`, docs/scaling.md
SKIP = {"report.py", "scale.py"}  # the soak is a package: benchmarks/soak/


def scripts() -> list[Path]:
    return [s for s in sorted((ROOT / "benchmarks").glob("[!_]*.py")) if s.name not in SKIP]


def run_all(results: Path, smoke: bool) -> int:
    failed = 0
    for script in scripts():
        print(f"== {script.name}", flush=True)
        start = time.monotonic()
        extra = ["--smoke"] if smoke else []
        result = subprocess.run(
            [sys.executable, str(script), *extra, "--results", str(results)], cwd=ROOT, check=False
        )
        print(f"   {script.name}: exit {result.returncode}, {time.monotonic() - start:.0f} s")
        failed += result.returncode != 0
    return failed


def render(data: dict[str, Any]) -> list[str]:
    config = ", ".join(f"{k} {format_value(v)}" for k, v in data["config"].items())
    lines = [
        f"### {data['benchmark']}",
        "",
        f"Run {data['date']} at commit `{data['commit'] or '?'}` · {data['machine']}"
        + (
            f" · load average {data['load average at start']} at start"
            if "load average at start" in data
            else ""
        )
        + (
            f" · speed reference {format_value(data['speed reference at start'])} frames/s"
            if "speed reference at start" in data
            else ""
        )
        + (f" · {config}" if config else ""),
        "",
    ]
    for table in data["tables"]:
        lines += [f"**{table['title']}**", ""]
        lines.append("| " + " | ".join(table["columns"]) + " |")
        lines.append(
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table["columns"]))) + "|"
        )
        for row in table["rows"]:
            lines.append("| " + " | ".join(format_value(v) for v in row) + " |")
        lines.append("")
        if table.get("note"):
            lines += [table["note"], ""]
    return lines


def _row(data: dict[str, Any] | None, title: str, match: Any) -> list[Any] | None:
    """The first row of the table whose title starts with ``title`` that ``match`` accepts."""
    for table in (data or {}).get("tables", []):
        if table["title"].startswith(title):
            for row in table["rows"]:
                if match(row):
                    return list(row)
    return None


def goals(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's goals next to the figure each run measured (all from the JSON)."""
    gather = _row(runs.get("gather"), "Gatherer", lambda r: r[:2] == ["websockets", "default"])
    rss = _row(runs.get("gather"), "Peak RSS", lambda r: str(r[0]).startswith("registry"))
    jsonl = _row(runs.get("replay"), "Replay", lambda r: "jsonl" in str(r[0]))
    into_db = _row(runs.get("replay"), "Replay", lambda r: "PostgreSQL" in str(r[0]))
    merge = _row(runs.get("dedup"), "Merge", lambda r: r[0] == "clean")
    layout = _row(runs.get("memory"), "One gatherer", lambda r: True)
    wanted = [
        (
            "gatherer, default config: processed msgs/s",
            "gather",
            gather and gather[3],
            ">=",
            100_000,
        ),
        (
            "gatherer, default config: committed msgs/s",
            "gather",
            gather and gather[4],
            ">=",
            50_000,
        ),
        (
            "gatherer, default config: committed / bare receive",
            "gather",
            gather and gather[6],
            ">=",
            0.5,
        ),
        (
            "replay -> jsonl /dev/null: ratio to bare orjson.loads",
            "replay",
            jsonl and jsonl[2],
            ">=",
            0.3,
        ),
        ("replay -> PostgreSQL frames/s", "replay", into_db and into_db[1], ">=", 100_000),
        (
            "deduplicator merge / bare COPY (default sync.batch_size)",
            "dedup",
            merge and merge[6],
            ">=",
            0.5,
        ),
        (
            "peak RSS MiB, registry of 250 000 markets + 20 000 books",
            "gather",
            rss and rss[1],
            "<=",
            1024,
        ),
        (
            "peak RSS MiB, one gatherer: 250 000 markets, 150 connections, every book live",
            "memory",
            layout and layout[-1],
            "<=",
            1024,
        ),
    ]
    lines = ["**Goals (issue 19) against the latest run of each benchmark**", "",
             "| goal | measured | target | met | run (load average at start), speed reference |",
             "|---|---:|---:|---:|---|"]  # fmt: skip
    unsteady = layout is not None and layout[-2] is None  # the deadline came first
    for what, name, value, op, target in wanted:
        if value is None:
            met = "not measured"
        elif unsteady and "150 connections" in what:
            met = "not steady within the deadline (see *memory*)"
        else:
            met = "yes" if (value >= target if op == ">=" else value <= target) else "**no**"
        lines.append(
            f"| {what} | {format_value(value)} | {op} {format_value(target)} | {met} "
            f"| {_run(runs.get(name))} |"
        )
    return [*lines, ""]


def _run(data: dict[str, Any] | None) -> str:
    """``2026-12-01 12:40 UTC (0.71)``: when a benchmark ran, and the load it started under."""
    if data is None:
        return "–"
    load = data.get("load average at start")
    speed = data.get("speed reference at start")
    return (
        f"{data['benchmark']}, {data['date']}"
        + (f" ({format_value(load)})" if load is not None else "")
        + (f", speed {format_value(speed)}" if speed is not None else "")
    )


def generate(results: Path) -> None:
    parts = [BEGIN, "", "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`.", ""]
    runs = {
        data["benchmark"]: data
        for data in (orjson.loads(p.read_bytes()) for p in sorted(results.glob("*.json")))
        if "tables" in data
    }
    parts += goals(runs)
    for data in runs.values():
        parts += render(data)
    parts.append(END)
    replace_block(DOC, BEGIN, END, "\n".join(parts), "Figures of the latest run")
    print(f"wrote {DOC.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="only generate the tables")
    parser.add_argument("--smoke", action="store_true", help="each benchmark briefly, no docs")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="kalshi-bench-smoke-") as tmp:
            return 1 if run_all(Path(tmp), smoke=True) else 0
    failed = 0 if args.no_run else run_all(RESULTS, smoke=False)
    generate(RESULTS)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
