"""`kalshi gather`: record market data into the database (and the raw journal)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import trio
from cyclopts import Parameter

from kalshi.auth import Signer, load_private_key
from kalshi.cli.app import (
    POSITIVE,
    UsageError,
    configure_logging,
    console,
    fail,
    load_or_exit,
    ports_first,
    stop_on_signals,
)
from kalshi.config import GathererConfig
from kalshi.errors import AuthError, DatabaseUnavailable, JournalError, KalshiError
from kalshi.gather.service import Gatherer
from kalshi.http import endpoint_ports
from kalshi.pipeline.frames import PROBLEM_COUNTS
from kalshi.replay.tail import journal_tail
from kalshi.store import migrate, resolve_database
from kalshi.tui import run_tui

log = logging.getLogger("kalshi.cli")


def gather(
    *,
    config: Annotated[Path | None, Parameter(help="Gatherer config (YAML).")] = None,
    tui: Annotated[bool, Parameter(help="Show the live screen while recording.")] = False,
    shard: Annotated[str | None, Parameter(help="Record shard i of n, e.g. 0/3.")] = None,
    duration: Annotated[
        float | None,
        Parameter(
            help="Stop after this many seconds (default: run until Ctrl-C).", validator=POSITIVE
        ),
    ] = None,
) -> None:
    """Record every market's order book, trades, tickers and lifecycle.

    Ctrl-C or SIGTERM stops reading, flushes every row and the journal, and exits 0;
    1 when the stop could not keep something (rows or journal records; the last line
    counts them, docs/operations.md).
    """
    overrides = {"shard": shard} if shard is not None else None
    cfg = load_or_exit(config, GathererConfig, overrides=overrides)
    try:  # the key is checked before a database is started or migrated
        signer = Signer(cfg.kalshi.api_key, load_private_key(cfg.kalshi.api_secret))
    except AuthError as exc:
        raise UsageError(str(exc)) from None
    configure_logging(cfg.logging, quiet=tui)
    try:
        # a taken port fails here, before the database is started, migrated or written
        ports_first(*endpoint_ports(cfg.http, cfg.metrics))
        with resolve_database(cfg.timescaledb) as url:
            migrated = True
            try:
                migrate(url)  # logs each migration it applies (kalshi.store)
            except DatabaseUnavailable as exc:  # recording does not wait for the database
                migrated = False
                log.warning(
                    "database unreachable at start (%s): recording to the journal, memory and"
                    " the spool; migrations and rows follow when it answers",
                    exc,
                )
            trio.run(_gather, cfg, url, signer, tui, duration, migrated)
    except KalshiError as exc:
        fail(str(exc))


async def _gather(
    cfg: GathererConfig,
    url: str,
    signer: Signer,
    tui: bool,
    duration: float | None,
    migrated: bool,
) -> None:
    gatherer = Gatherer(cfg, url, signer=signer, journal_tail=journal_tail, migrated=migrated)
    await record(gatherer, duration, tui)
    if not tui:
        frames = sum(c.messages for c in gatherer.layout.connections) if gatherer.layout else 0
        console.print(
            summary_line(frames, gatherer.processor.counts),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    journal = gatherer.journal
    if journal is not None and journal.unwritten_records:
        # after the summary: the stop was clean; the records are lost to the journal (the
        # database holds the rows it acknowledged), so the exit says so (1), like the store's
        raise JournalError(
            f"journal: {journal.unwritten_records} records ({journal.unwritten_bytes} bytes)"
            f" not written at shutdown: {journal.unwritten_error or 'the grace ran out'}"
        )


async def record(gatherer: Gatherer, duration: float | None, tui: bool) -> None:
    """Run ``gatherer`` until SIGINT/SIGTERM or ``duration`` seconds, with the live screen
    when ``tui``; logs where its /health is served."""
    async with stop_on_signals(duration) as nursery:
        await nursery.start(gatherer.run)
        endpoints = gatherer.endpoints
        if endpoints is not None and endpoints.health is not None:
            log.info("health on %s/health", endpoints.health.url)
        if tui:
            nursery.start_soon(run_tui, gatherer.health)


def summary_line(frames: int, counts: Mapping[str, int]) -> str:
    """``stopped; N frames received (<type> n, ...)[; flagged: <problem> n, ...]`` from
    the pipeline's :attr:`~kalshi.pipeline.FrameProcessor.counts`: each frame once, by its
    type; the problems apart (their frames are counted by type already, and
    ``error_reply`` counts the ``error`` frames again)."""
    by_type = ", ".join(
        f"{kind} {n}" for kind, n in sorted(counts.items()) if kind not in PROBLEM_COUNTS
    )
    flags = [
        f"{kind} {n}"
        for kind, n in sorted(counts.items())
        if kind in PROBLEM_COUNTS and kind != "error_reply" and n
    ]
    flagged = f"; flagged: {', '.join(flags)}" if flags else ""
    return f"stopped; {frames} frames received ({by_type}){flagged}"
