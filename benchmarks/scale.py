"""`just scale`: the whole system at full size (benchmarks/fullscale), measured; writes
benchmarks/results/scale/scale.json and the table between the ``scale:begin`` / ``scale:end``
markers of docs/scaling.md.

    python benchmarks/scale.py [--minutes 30] [--markets 250000] [--active 5000]
                               [--rate 2000] [--workdir DIR] [--no-doc]
                               [--no-live-dedup] [--doc-block NAME] [--from-json PATH]

Exit 0 when nothing was lost, doubled or unequal and nothing reconnected; 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import trio
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, replace_block, speed
from fullscale import run_scale

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "scaling.md"
OUT = ROOT / "benchmarks" / "results" / "scale" / "scale.json"  # not rendered by report.py
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return " · ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _mib(sizes: dict[str, int]) -> dict[str, str]:
    return {k: f"{v / 2**20:,.1f} MiB" for k, v in sizes.items()}


def _cores(cores: dict[str, float] | None) -> str:
    if not cores:
        return "-"
    return " · ".join(f"{k} {v:.2f}" for k, v in cores.items()) + f" (of {os.cpu_count()})"


def _split(doc: dict[str, Any]) -> str:
    split = doc.get("latency_split_s") or {}
    read, write = split.get("exchange_to_received"), split.get("received_to_committed")
    if not read or not write:
        return "-"
    return f"p50 {read['p50']} · p99 {read['p99']} / p50 {write['p50']} · p99 {write['p99']}"


def _sim(doc: dict[str, Any]) -> str:
    outbox, late = doc.get("sim_outbox_mib"), doc.get("sim_engine_late_s")
    if not outbox or not late:
        return "-"
    return f"p50 {outbox['p50']} · max {outbox['max']} / p50 {late['p50']} · p99 {late['p99']}"


def table(doc: dict[str, Any]) -> str:
    """The figures of one run as a Markdown table."""
    latency = doc.get("latency_s", {})
    g = doc.get
    run = (
        f"{g('markets'):,} markets ({g('active'):,} trading, {g('busy')} busy), "
        f"{g('rate'):,.0f} msgs/s, bursts ×20 for 10 s every {g('burst_every_s'):.0f} s, "
        f"{g('minutes'):g} min, {g('gatherers', 2)} gatherer(s) of {g('shards')} process(es)"
        f"{'' if g('live_dedup', True) else ', deduplicator only after the recording'}"
        f"{''.join(f', {k}: {v}' for k, v in (g('gatherer_set') or {}).items())}; "
        f"{g('machine', '')}"
        + (
            f" · speed reference {g('speed_reference'):,} frames/s (benchmarks/_common.py speed)"
            if g("speed_reference")
            else ""
        )
    )
    trades = f"{_fmt(g('trades_generated'))} / {g('trades_lost')} / {g('trades_duplicated')}"
    reconnects = f"{_fmt(g('reconnects_during_startup'))} / {_fmt(g('reconnects'))}"
    rows = [
        ("run", run),
        ("markets subscribed per gatherer", _fmt(g("markets_subscribed"))),
        ("time to all subscribed (s)", _fmt(g("seconds_to_all_subscribed"))),
        ("time to all books (s)", _fmt(g("seconds_to_all_books"))),
        ("messages generated (bursts)", f"{_fmt(g('messages_generated'))} ({g('bursts')})"),
        ("msgs/s achieved by the simulator", _fmt(g("achieved_rate"))),
        ("CPU seconds", _fmt(g("cpu_seconds"))),
        ("cores used while recording (of the machine's)", _cores(g("cores_while_recording"))),
        ("peak RSS (MiB)", _fmt(g("peak_rss_mib"))),
        ("PostgreSQL RSS at the end (MiB)", _fmt(g("postgres_rss_mib_at_end"))),
        ("exchange → committed, quiet (s)", _fmt(latency.get("quiet"))),
        ("exchange → committed, bursts (s)", _fmt(latency.get("burst"))),
        ("newest row: exchange → received / received → committed (s)", _split(doc)),
        ("simulator: unsent outbox (MiB) / engine behind schedule (s)", _sim(doc)),
        ("max queue (rows)", _fmt(g("max_queue_rows"))),
        ("max spool (rows)", _fmt(g("max_spool_rows"))),
        ("max read-ahead, whole-exchange sockets (frames)", _fmt(g("max_read_ahead_frames"))),
        ("rows, production", _fmt((g("rows") or {}).get("prod"))),
        ("rows, first gatherer", _fmt(next(iter((g("rows") or {}).values()), None))),
        ("bytes", _fmt(_mib(g("bytes") or {}))),
        ("bytes added per hour (extrapolated)", _fmt(_mib(g("bytes_per_hour") or {}))),
        ("bytes added per day (extrapolated)", _fmt(_mib(g("bytes_per_day") or {}))),
        ("reconnects (startup / recording)", reconnects),
        ("trades generated / lost / duplicated", trades),
        ("books checked / unequal", f"{_fmt(g('books_checked'))} / {g('books_unequal')}"),
        ("failures", "; ".join(doc["failures"]) or "none"),
    ]
    if g("seconds_to_settled") is not None:  # runs before 2026-12-02 06:00 did not wait
        rows.insert(
            4, ("time to settled: books written, nothing queued (s)", _fmt(g("seconds_to_settled")))
        )
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--markets", type=int, default=250_000)
    parser.add_argument("--active", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--burst-every", type=float, default=180.0)
    parser.add_argument("--startup-limit", type=float, default=900.0)
    parser.add_argument("--shards", type=int, default=1, help="processes per gatherer")
    parser.add_argument(
        "--gatherers", type=int, default=2, choices=(1, 2), help="redundant gatherers"
    )
    parser.add_argument(
        "--no-live-dedup",
        action="store_true",
        help="the deduplicator only merges once after the recording (it runs on a host of"
        " its own in production): measures the gatherers without it on the same cores",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a gatherer config key over the stock one (dotted, YAML value), e.g."
        " websocket.read_ahead_bytes=64MiB; repeatable; named in the table's run line",
    )
    parser.add_argument(
        "--doc-block",
        default=None,
        help="write the table between the scale-BLOCK:begin/end markers of docs/scaling.md"
        " (default: the default run's scale:begin/end)",
    )
    parser.add_argument(
        "--from-json", type=Path, default=None, help="no run: the table of this run's JSON"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/scaling.md")
    args = parser.parse_args()
    workdir = args.workdir or (
        Path(tempfile.mkdtemp(prefix="kalshi-scale-")) if args.from_json is None else Path()
    )

    async def run() -> dict[str, Any]:
        """The run; SIGTERM and SIGINT stop it and its children cleanly."""
        result: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            result.update(
                await run_scale(
                    workdir,
                    minutes=args.minutes,
                    markets=args.markets,
                    active=args.active,
                    rate=args.rate,
                    burst_every=args.burst_every,
                    shards=args.shards,
                    replicas=args.gatherers,
                    startup_limit=args.startup_limit,
                    live_dedup=not args.no_live_dedup,
                    gatherer_set=dict(_setting(item) for item in args.set),
                )
            )
            nursery.cancel_scope.cancel()
        if not result:
            raise SystemExit("stopped by a signal")
        return result

    if args.from_json is not None:  # a table again from a run's JSON, no run
        doc = orjson.loads(args.from_json.read_bytes())
    else:
        reference = speed()  # before the run: the machine's own speed, not the run's load
        doc = trio.run(run)
        doc["machine"] = machine()
        doc["speed_reference"] = reference
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"wrote {args.out}")
    text = table(doc)
    print(text)
    if not args.no_doc:
        write_doc(text, args.doc_block)
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if doc["failures"] else 0


def _setting(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--set``: the dotted key and the value parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


def write_doc(text: str, block: str | None) -> None:
    """Put ``text`` between the markers of ``block`` in docs/scaling.md (``scale:begin`` /
    ``scale:end`` for the default run, ``scale-BLOCK:begin`` / ``scale-BLOCK:end``
    otherwise); appended under a heading of its own when the markers are missing."""
    begin, end = (
        (BEGIN, END)
        if block is None
        else (
            f"<!-- scale-{block}:begin -->",
            f"<!-- scale-{block}:end -->",
        )
    )
    replace_block(DOC, begin, end, f"{begin}\n\n{text}\n\n{end}", "Measured at scale")


if __name__ == "__main__":
    raise SystemExit(main())
