"""`kalshi snapshot --ticker T`: one market's order book, now or at a past time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import orjson
from cyclopts import Parameter

from kalshi.cli.app import (
    POSITIVE,
    UsageError,
    console,
    err_console,
    fail,
    load_or_exit,
    operands,
    parse_time,
    run_until_signal,
)
from kalshi.cli.replay import (
    FrameField,
    SeqCheckOption,
    TimeField,
    TimeUnitOption,
    source_options,
)
from kalshi.config import GathererConfig
from kalshi.errors import KalshiError
from kalshi.net import RestClient, system_wall_us
from kalshi.replay import (
    BookAt,
    book_document,
    book_from_db,
    book_from_journal,
    book_from_rest,
    book_table,
    latest_ticker,
)
from kalshi.replay.source import read_records
from kalshi.store import connect_db, resolve_database


def snapshot(
    files: Annotated[
        list[str] | None,
        Parameter(
            help="Journals or captures, directories, - (stdin), s3:// prefixes.",
            allow_leading_hyphen=True,
        ),
    ] = None,
    /,
    *,
    ticker: Annotated[
        str | None,
        Parameter(
            help="Market ticker (default with --source db: the market of the newest delta"
            " stored, or received by --at)."
        ),
    ] = None,
    depth: Annotated[
        int | None, Parameter(help="Levels per side (default: all).", validator=POSITIVE)
    ] = None,
    json: Annotated[bool, Parameter(help="Print JSON instead of a table.")] = False,
    source: Annotated[
        Literal["rest", "db", "journal"] | None,
        Parameter(help="Where from (default: journal when FILES are given, else db)."),
    ] = None,
    at: Annotated[
        str | None,
        Parameter(help="Reconstruct at this receive time: RFC 3339, date or µs (db, journal)."),
    ] = None,
    config: Annotated[Path | None, Parameter(help="Gatherer config (YAML).")] = None,
    db: Annotated[
        str | None, Parameter(help="PostgreSQL URL; overrides timescaledb.url (empty: embedded).")
    ] = None,
    frame_field: FrameField = None,
    time_field: TimeField = None,
    time_unit: TimeUnitOption = None,
    seq_check: SeqCheckOption = "auto",
) -> None:
    """Print the order book of one market: YES and NO bids with cumulative depth, best
    bid/ask and spread. No data, an unknown ticker or an unreachable source: one line on
    stderr, exit 1.

    Without ``--ticker`` (database only): the market of the newest delta stored, or of the
    newest received by ``--at``."""
    operands(files or [])
    chosen = source or ("journal" if files else "db")
    if chosen == "journal" and not files:
        raise UsageError("--source journal needs journal FILES")
    if chosen != "journal" and files:
        raise UsageError(f"FILES are only read with --source journal (not {chosen})")
    if ticker is None and chosen != "db":
        raise UsageError(f"--ticker is needed with --source {chosen}")
    if chosen == "rest" and at is not None:
        raise UsageError("--at needs --source db or journal (REST has only the current book)")
    at_us = parse_time(at, "--at") if at is not None else None
    overrides = {"timescaledb.url": db} if db is not None else None
    cfg = load_or_exit(config, GathererConfig, overrides=overrides)
    try:
        if chosen == "journal":
            assert files and ticker is not None
            options = source_options(frame_field, time_field, time_unit, seq_check, at_us)
            items = read_records(files, options, s3=cfg.s3_export)
            result = book_from_journal(items, ticker, at_us, seq_check)
        elif chosen == "db":
            with resolve_database(cfg.timescaledb) as url, connect_db(url) as database:
                if ticker is None:
                    ticker = latest_ticker(database, at_us)
                result = book_from_db(database, ticker, at_us)
        else:
            assert ticker is not None
            result = run_until_signal(_from_rest, cfg, ticker)
    except KalshiError as exc:
        fail(str(exc))
    if json:
        sys.stdout.buffer.write(
            orjson.dumps(book_document(result, depth), option=orjson.OPT_APPEND_NEWLINE)
        )
    else:
        console.print(book_table(result, depth))
    if result.stale:
        err_console.print(f"warning: {ticker}: book is stale: {result.detail}", soft_wrap=True)


async def _from_rest(cfg: GathererConfig, ticker: str) -> BookAt:
    # Unsigned: market-data GETs, the order book included, are public (kalshi-api.md, "REST
    # auth"); a config's key (even a placeholder or an unreadable file) is not needed here.
    timeout = float(cfg.kalshi.request_timeout)
    async with RestClient(
        cfg.kalshi.rest_url, None, timeout=timeout, attempts=3, backoff=(0.5, 2.0)
    ) as rest:
        return await book_from_rest(rest, ticker, system_wall_us())
