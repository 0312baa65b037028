"""`kalshi dedup`: merge the gatherers' databases into production (and export)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import trio
from cyclopts import Parameter

from kalshi.cli.app import app, console, fail, load_or_exit
from kalshi.config import DedupConfig
from kalshi.dedup.service import Deduplicator, PassReport, serve_dedup
from kalshi.errors import KalshiError
from kalshi.store import migrate

log = logging.getLogger("kalshi.cli")


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _checked(cfg: DedupConfig) -> DedupConfig:
    if not cfg.production.url:
        fail("production.url: the production database URL is required")
    if not cfg.gatherers:
        fail("gatherers: at least one gatherer database is required")
    same = [g.id for g in cfg.gatherers if g.timescaledb == cfg.production.url]
    if same:
        fail(
            f"gatherers: {', '.join(same)} writes to the production database itself; "
            "run the gatherer against its own database and let dedup fill production"
        )
    return cfg


@app.command
def dedup(
    *,
    config: Annotated[Path | None, Parameter(help="Deduplicator config (YAML).")] = None,
    once: Annotated[bool, Parameter(help="Merge everything present now, then exit.")] = False,
) -> None:
    """Merge the gatherers' databases into the production database, continuously.

    Trades by trade id, tickers/lifecycle/snapshots by exchange identity, order books by
    book state with gaps filled from whichever gatherer has the data. Ctrl-C or SIGTERM
    stops between transactions and exits 0.
    """
    cfg = _checked(load_or_exit(config, DedupConfig))
    _logging(cfg.logging.level)
    try:
        for name in migrate(cfg.production.url):
            log.info("applied migration %s", name)
        trio.run(_once if once else _serve, cfg)
    except KalshiError as exc:
        fail(str(exc))


async def _once(cfg: DedupConfig) -> None:
    dedup = Deduplicator(cfg)
    try:
        report = await dedup.run_pass(settle_us=0)
    finally:
        dedup.close()
    _summary(report)


def _summary(report: PassReport) -> None:
    for table in sorted(report.merged):
        dropped = report.duplicates.get(table, 0)
        console.print(f"{table:<20} {report.merged[table]:>10,} merged {dropped:>10,} duplicates")
    console.print(f"source switches: {report.switches}, holes: {report.holes}")
    if report.skipped:
        console.print(f"skipped (unreachable): {', '.join(report.skipped)}")


async def _serve(cfg: DedupConfig) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            dedup = await nursery.start(serve_dedup, cfg)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.warning("%s: stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
    console.print(f"stopped after {dedup.passes} passes")
