"""`kalshi dedup` (merge the gatherers' databases into production, and export) and
`kalshi export` (export closed windows of production to S3 or a directory)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import trio
from cyclopts import Parameter

from kalshi.cli.app import (
    UsageError,
    config_fail,
    configure_logging,
    console,
    err_console,
    fail,
    load_or_exit,
    parse_time,
    ports_first,
    redact_url,
    run_until_signal,
    stop_on_signals,
)
from kalshi.config import DedupConfig
from kalshi.dedup.export import ALL_WINDOWS, Exporter, WindowExport
from kalshi.dedup.service import Deduplicator, PassReport, serve_dedup
from kalshi.errors import KalshiError
from kalshi.http import endpoint_ports
from kalshi.store import migrate
from kalshi.store.schema import TABLES


def _checked(cfg: DedupConfig, path: Path | None) -> DedupConfig:
    """``cfg`` when it names a production database and gatherers to merge from; else every
    missing piece as a config error (exit 2)."""
    problems = dedup_problems(cfg)
    if problems:
        config_fail(path, problems)
    return cfg


def dedup_problems(cfg: DedupConfig) -> list[str]:
    """What ``kalshi dedup`` and ``kalshi export`` need of a loaded config beyond its
    types and ranges, one line per missing piece: a production database, gatherers to
    merge from, none of them writing to production itself."""
    problems = []
    if not cfg.production.url:
        problems.append("production.url: the production database URL is required")
    if not cfg.gatherers:
        problems.append("gatherers: at least one gatherer database is required")
    same = [g.id for g in cfg.gatherers if g.timescaledb == cfg.production.url]
    if same:
        problems.append(
            f"gatherers: {', '.join(same)} writes to the production database itself"
            " (its timescaledb is production.url); dedup copies each gatherer's database"
            " into production, so they must differ: point production.url at another"
            " database, e.g. run CREATE DATABASE kalshi_production on the same server and"
            " use its URL (docs/configuration.md, Deduplicator)"
        )
    return problems


def dedup(
    *,
    config: Annotated[Path | None, Parameter(help="Deduplicator config (YAML).")] = None,
    once: Annotated[bool, Parameter(help="Merge everything present now, then exit.")] = False,
    all_windows: Annotated[
        bool,
        Parameter(
            help="With --once: export every window, the newest too, as if closed (the"
            " gatherers have stopped; later rows rewrite those windows)."
        ),
    ] = False,
) -> None:
    """Merge the gatherers' databases into the production database, continuously.

    Trades by trade id, tickers/lifecycle/snapshots by exchange identity, order books by
    book state with gaps filled from whichever gatherer has the data. Ctrl-C or SIGTERM
    stops between transactions and exits 0. With ``--once``, a gatherer that could not be
    read makes it exit 1 with one error line naming it (the others are merged).
    """
    cfg = _checked(load_or_exit(config, DedupConfig), config)
    if all_windows and not once:
        raise UsageError(
            "--all-windows needs --once (a running deduplicator exports closed windows)"
        )
    configure_logging(cfg.logging)
    if not once:  # a taken port fails here, before production is migrated or written
        ports_first(*endpoint_ports(cfg.http, cfg.metrics))
    try:
        _migrate_production(cfg)
        if once:
            window = ALL_WINDOWS if all_windows else None
            unreachable = run_until_signal(_once, cfg, window)
            if unreachable:  # merged without them: not a success (outside tester, item 11)
                fail("; ".join(unreachable))
        else:
            trio.run(_serve, cfg)
    except KalshiError as exc:
        fail(str(exc))


def _migrate_production(cfg: DedupConfig) -> None:
    """Bring the production database's schema up to date; a :class:`KalshiError` (it is
    unreachable, a migration failed) exits 1 with one line naming production, as an
    unreachable gatherer is named."""
    try:
        migrate(cfg.production.url)  # logs each migration it applies (kalshi.store)
    except KalshiError as exc:
        fail(f"production database {redact_url(cfg.production.url)}: {exc}")


async def _once(cfg: DedupConfig, until: int | None) -> list[str]:
    """One pass (and the export); returns one line per gatherer that could not be read
    (the pass merged the others: the command then exits 1)."""
    dedup = Deduplicator(cfg)
    try:
        report = await dedup.run_pass(settle_us=0)
        errors = {gid: g["error"] for gid, g in dedup.health()["gatherers"].items()}
    finally:
        dedup.close()
    _summary(report)
    if cfg.s3_export.enabled:
        await _export(cfg, until=until, force=False)
    return [f"gatherer {gid} unreachable, not merged: {errors[gid]}" for gid in report.skipped]


def _exporter(cfg: DedupConfig) -> Exporter:
    return Exporter(cfg.production.url, cfg.s3_export, max_lag=float(cfg.sync.max_lag))


async def _export(cfg: DedupConfig, *, until: int | None, force: bool) -> None:
    exporter = _exporter(cfg)
    try:
        survey = await exporter.survey(until=until, force=force)
        behind = survey.behind(until)
        if behind is not None:
            err_console.print(f"warning: {behind}", markup=False, highlight=False, soft_wrap=True)
        for held in survey.held:
            console.print(f"export: {held.reason()}", markup=False, highlight=False, soft_wrap=True)
        if survey.held and until is None:
            console.print(
                "export: if the gatherers have stopped, --all-windows exports those windows now",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        if survey.rewrites:
            console.print(
                f"export: {len(survey.rewrites)} windows behind the export gained rows since;"
                " writing them again",
                markup=False,
                highlight=False,
            )
        if await exporter.export_markets(force=force) is None:
            console.print(
                "export: markets unchanged since their last export: not written again",
                markup=False,
                highlight=False,
            )
        plan = survey.windows
        if not plan:
            console.print("export: no closed window to export", markup=False, highlight=False)
            return
        if not err_console.is_terminal:
            done = await exporter.export(plan)
        else:
            from rich.progress import BarColumn, Progress, TextColumn

            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} windows"),
                console=err_console,
                transient=True,
            ) as bar:
                task = bar.add_task("export", total=len(plan))

                def advance(window: WindowExport) -> None:
                    bar.update(task, advance=1, description=f"export {window.table}")

                done = await exporter.export(plan, advance)
    finally:
        exporter.close()
    size = sum(w.bytes for w in done)
    console.print(
        f"exported {len(done)} windows, {sum(w.rows for w in done):,} rows, {size:,} bytes"
    )


def export(
    *,
    config: Annotated[Path | None, Parameter(help="Deduplicator config (YAML).")] = None,
    until: Annotated[
        str | None,
        Parameter(
            help="Treat every table's windows ending by this time (RFC 3339, date or µs)"
            " as closed (instead of waiting for the merge cursors to pass them)."
        ),
    ] = None,
    all_windows: Annotated[
        bool,
        Parameter(
            help="Export every window, the newest too, as if closed (the gatherers have"
            " stopped; later rows rewrite those windows)."
        ),
    ] = False,
    force: Annotated[bool, Parameter(help="Re-export windows exported before.")] = False,
    local_dir: Annotated[
        str | None, Parameter(help="Write to this directory instead of S3.")
    ] = None,
) -> None:
    """Export closed windows of the production database as Parquet (S3 or a directory).

    Re-exporting a window replaces its files; a progress bar shows on a terminal. A table
    whose next window is not closed yet gets one line saying so and why. Windows that
    gained rows since their export are rewritten.
    """
    if all_windows and until is not None:
        raise UsageError("--all-windows and --until: give one of them")
    limit = parse_time(until, "--until") if until is not None else None
    overrides = {"s3_export.local_dir": local_dir} if local_dir is not None else None
    cfg = load_or_exit(config, DedupConfig, overrides=overrides)
    if not cfg.production.url:
        config_fail(config, ["production.url: the production database URL is required"])
    configure_logging(cfg.logging)
    if all_windows:
        limit = ALL_WINDOWS
    _migrate_production(cfg)
    try:
        run_until_signal(partial(_export, cfg, until=limit, force=force))
    except KalshiError as exc:
        fail(str(exc))


def _summary(report: PassReport) -> None:
    """One row per data table, every table every time (0 when a pass merged none of it),
    then the source switches and holes."""
    for table in sorted(TABLES.keys() | report.merged.keys()):
        merged, dropped = report.merged.get(table, 0), report.duplicates.get(table, 0)
        console.print(f"{table:<20} {merged:>10,} merged {dropped:>10,} duplicates")
    console.print(f"source switches: {report.switches}, holes: {report.holes}")


async def _serve(cfg: DedupConfig) -> None:
    exporter = _exporter(cfg) if cfg.s3_export.enabled else None
    async with stop_on_signals() as nursery:
        dedup = await nursery.start(partial(serve_dedup, cfg, exporter=exporter))
    console.print(f"stopped after {dedup.passes} passes")
