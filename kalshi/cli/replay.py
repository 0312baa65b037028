"""`kalshi replay FILE...`: a journal through the live pipeline, into a database or stdout,
or re-served as a Kalshi WebSocket."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import trio
from cyclopts import Parameter
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from kalshi.cli.app import (
    POSITIVE,
    UsageError,
    check_port,
    configure_logging,
    console,
    err_console,
    fail,
    load_or_exit,
    operands,
    parse_time,
    ports_first,
    stop_on_signals,
)
from kalshi.config import GathererConfig
from kalshi.errors import KalshiError
from kalshi.journal import JournalProblem, JournalRecord
from kalshi.journal.files import file_stamp
from kalshi.pipeline import TYPE_CHANNEL, Sink
from kalshi.replay import (
    CsvSink,
    JsonlSink,
    Replayer,
    ReplayFilter,
    ReplayStats,
    replay_into_db,
)
from kalshi.replay import (
    replay as replay_items,
)
from kalshi.replay.capture import CaptureFormat, TimeUnit
from kalshi.replay.continuity import Continuity
from kalshi.replay.core import count_lines
from kalshi.replay.serve import SERVER_NAME, WS_PATH, serve_recording
from kalshi.replay.source import SeqCheck, SourceOptions, read_records, source_files
from kalshi.replay.view import continuity_report, session_lines
from kalshi.replay.writer_process import DEFAULT_WRITERS, Writers
from kalshi.store import TABLES, migrate, resolve_database

log = logging.getLogger("kalshi.cli")

# The channels rows come from (a frame's recorded subscription, else its type's channel):
# --channel takes these names only, as --table takes the tables'.
CHANNELS = dict.fromkeys(TYPE_CHANNEL.values())


# the reasons of a file's torn end (kalshi.journal.reader, kalshi.replay.source)
_TORN = ("torn last line", "torn zstd tail", "torn gzip tail", "torn xz tail", "torn bzip2 tail")


FrameField = Annotated[
    str | None,
    Parameter(help="Capture lines: the field holding the frame (default: detected)."),
]
TimeField = Annotated[
    str | None,
    Parameter(help="Capture lines: the field holding the receive time (default: detected)."),
]
TimeUnitOption = Annotated[
    TimeUnit | None,
    Parameter(help="Unit of a numeric receive time (default: by field name, else by size)."),
]
SeqCheckOption = Annotated[
    SeqCheck,
    Parameter(
        help="Sequence rule: contiguous (a skipped seq is a lost frame), filtered "
        "(a capture of some markets of wider subscriptions), auto (detected)."
    ),
]


def source_options(
    frame_field: str | None,
    time_field: str | None,
    time_unit: TimeUnit | None,
    seq_check: SeqCheck,
    until_us: int | None = None,
) -> SourceOptions:
    """The reading options of ``replay`` and ``snapshot`` from their command-line values."""
    return SourceOptions(CaptureFormat(frame_field, time_field, time_unit), seq_check, until_us)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- msgs/s" if speed is None else f"{speed:,.0f} msgs/s", style="cyan")


@contextmanager
def _progress(files: list[str], enabled: bool) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    total = count_lines(files)
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=total)
        yield lambda done: bar.update(task, completed=done)


def replay(
    files: Annotated[
        list[str],
        Parameter(
            help="Journals or captures (JSON lines, plain/gzip/zstd/xz/bzip2), directories, "
            "- (stdin), s3:// prefixes (every file or object read by its content; hidden "
            "ones left out).",
            allow_leading_hyphen=True,
        ),
    ],
    /,
    *,
    config: Annotated[Path | None, Parameter(help="Gatherer config (YAML).")] = None,
    db: Annotated[
        str | None, Parameter(help="PostgreSQL URL; overrides timescaledb.url (empty: embedded).")
    ] = None,
    format: Annotated[
        Literal["jsonl", "csv"] | None,
        Parameter(help="Print normalized rows to stdout instead of writing a database."),
    ] = None,
    table: Annotated[
        list[str] | None,
        Parameter(
            help="Only these tables (csv needs exactly one).", negative=(), consume_multiple=True
        ),
    ] = None,
    ticker: Annotated[
        list[str] | None,
        Parameter(help="Only rows of these markets.", negative=(), consume_multiple=True),
    ] = None,
    channel: Annotated[
        list[str] | None,
        Parameter(
            help="Only rows from these channels (e.g. trade).", negative=(), consume_multiple=True
        ),
    ] = None,
    from_: Annotated[
        str | None, Parameter(name="--from", help="Start (receive time): RFC 3339, date or µs.")
    ] = None,
    to: Annotated[
        str | None, Parameter(help="End, inclusive (receive time): RFC 3339, date or µs.")
    ] = None,
    speed: Annotated[
        float | None,
        Parameter(
            help="Pace by recorded time: 1 = real time, 10 = 10x faster.", validator=POSITIVE
        ),
    ] = None,
    serve: Annotated[
        int | None, Parameter(help="Re-serve the recording as a Kalshi WebSocket on this port.")
    ] = None,
    progress: Annotated[
        bool | None, Parameter(help="Progress bar (default: when stderr is a terminal).")
    ] = None,
    frame_field: FrameField = None,
    time_field: TimeField = None,
    time_unit: TimeUnitOption = None,
    seq_check: SeqCheckOption = "auto",
    continuity: Annotated[
        bool, Parameter(help="Print what the recording proves, per session and market.")
    ] = False,
    writers: Annotated[
        Writers | None,
        Parameter(
            help="Into a database: the store's writers on this process's loop (inline, the "
            "default) or in a second process fed over a pipe (process); same rows, same "
            "summary."
        ),
    ] = None,
) -> None:
    """Replay journals or captures through the live decode -> book -> rows path.

    A capture (JSON lines of Kalshi frames, bare or wrapped with a receive time) is read
    like a journal: sessions split where seq restarts; --seq-check chooses how a skipped
    seq is read (docs/replay.md, "Captures").

    Into the database by default (idempotent: replaying twice adds nothing), or as rows on
    stdout with --format, or re-served over WebSocket with --serve. Corrupt journal lines
    are reported with file and line and skipped. Into a database it returns once every row
    is committed and prints the committed counts. The exit code is 1 when a line was
    corrupt or a row is left unwritten (spooled for this database, or dead-lettered).
    """
    operands(files)
    given = (("--db", db), ("--format", format), ("--serve", serve))
    modes = [name for name, value in given if value is not None]
    if len(modes) > 1:
        raise UsageError(f"{' and '.join(modes)} exclude each other: a replay goes to one place")
    # options of one place only: refused elsewhere rather than ignored (pbreak9 N6)
    others = (
        ("--writers", writers is not None, "--writers chooses a database replay's writers"),
        ("--table", bool(table), "a re-served recording is frames, not rows"),
        ("--continuity", continuity, "--continuity reports a replay, not a re-served one"),
    )
    for option, given_, why in others:
        place = "--serve" if serve is not None else "--format" if format is not None else None
        if given_ and place is not None and (option == "--writers" or place == "--serve"):
            raise UsageError(f"{place} and {option} do not go together: {why}")
    if serve is not None:
        check_port("--serve", serve)
    if serve is not None and "-" in files:
        raise UsageError("--serve reads its sources once per client: stdin (-) cannot be served")
    for option, values in (("--table", table), ("--ticker", ticker), ("--channel", channel)):
        _no_source_among(option, values or [])
    tables = frozenset(table or ())
    unknown = sorted(tables - TABLES.keys())
    if unknown:
        raise UsageError(f"--table: unknown table {unknown[0]!r} (one of {', '.join(TABLES)})")
    channels = frozenset(channel or ())
    unknown = sorted(channels - CHANNELS.keys())
    if unknown:
        raise UsageError(
            f"--channel: unknown channel {unknown[0]!r} (one of {', '.join(CHANNELS)})"
        )
    if format == "csv" and len(tables) != 1:
        raise UsageError("--format csv writes one table: give exactly one --table")
    start_us = parse_time(from_, "--from") if from_ is not None else None
    end_us = parse_time(to, "--to") if to is not None else None
    if start_us is not None and end_us is not None and start_us > end_us:
        # --to is inclusive: --from equal to --to is one instant, later is nothing at all
        raise UsageError(f"--from ({from_}) is after --to ({to}): the range holds nothing")
    flt = ReplayFilter(
        tickers=frozenset(ticker or ()),
        channels=channels,
        tables=tables,
        start_us=start_us,
        end_us=end_us,
    )
    overrides = {"timescaledb.url": db} if db is not None else None
    cfg = load_or_exit(config, GathererConfig, overrides=overrides)
    configure_logging(cfg.logging, quiet=True)  # warnings up, credentials redacted
    show = err_console.is_terminal if progress is None else progress
    replayer = Replayer(flt, seq_check)
    options = source_options(frame_field, time_field, time_unit, seq_check)
    try:
        if serve is not None:
            ports_first(("127.0.0.1", serve, SERVER_NAME))  # before a source is read
            source_files([f for f in files if not f.startswith("s3://")])  # exist?
            trio.run(_serve, files, cfg, serve, flt, speed, options)
            return
        items = read_records(files, options, s3=cfg.s3_export)
        # stdin and S3 objects are read in a worker thread; local files on the event loop
        blocking = any(f == "-" or f.startswith("s3://") for f in files)
        with _progress(files, show) as on_progress:
            if format is not None:
                sink: Sink
                out = sys.stdout.buffer
                sink = JsonlSink(out) if format == "jsonl" else CsvSink(out, next(iter(tables)))
                stats = trio.run(_to_stream, items, sink, replayer, speed, on_progress, blocking)
            else:
                with resolve_database(cfg.timescaledb) as url:
                    migrate(url)
                    stats = trio.run(
                        _to_db,
                        items,
                        url,
                        cfg,
                        replayer,
                        speed,
                        on_progress,
                        blocking,
                        writers or DEFAULT_WRITERS,
                    )
    except KalshiError as exc:
        fail(str(exc))
    if continuity:
        _say(err_console if format is not None else console, continuity_report(replayer))
    unseen = sorted(flt.tickers - replayer.continuity.markets.keys())
    if unseen:  # a typo keeps nothing: said, though not an error (exit code unchanged)
        _say(err_console, f"warning: --ticker: never seen in the input: {', '.join(unseen)}")
    _report(stats, replayer.continuity, to_stdout=format is not None)


def _no_source_among(option: str, values: list[str]) -> None:
    """A list option takes every value up to the next option (``--channel trade ticker``,
    or ``--channel trade --channel ticker``), so FILES given after it would be read as its
    values: one that names a source (``-``, an ``s3://`` prefix, an existing path) is a
    :class:`UsageError`, not a filter that keeps nothing."""
    for value in values:
        if value == "-" or value.startswith("s3://") or Path(value).exists():
            raise UsageError(
                f"{option}: {value!r} is a source, not a value: give FILES before the"
                " options, or end the list with --"
            )


async def _serve(
    files: list[str],
    cfg: GathererConfig,
    port: int,
    flt: ReplayFilter,
    speed: float | None,
    options: SourceOptions,
) -> None:
    def source() -> Iterator[JournalRecord | JournalProblem]:
        return read_records(files, options, s3=cfg.s3_export)

    async with stop_on_signals() as nursery:
        bound = await nursery.start(serve_recording, source, port, flt, speed)
        _say(console, f"serving {len(files)} source(s) on ws://127.0.0.1:{bound}{WS_PATH}")
    _say(console, "stopped")


async def _to_stream(
    items: Iterator[JournalRecord | JournalProblem],
    sink: JsonlSink | CsvSink,
    replayer: Replayer,
    speed: float | None,
    on_progress: Callable[[int], None] | None,
    blocking: bool,
) -> ReplayStats:
    try:
        return await _until_signal(
            lambda stop: replay_items(
                items,
                sink,
                replayer=replayer,
                speed=speed,
                on_progress=on_progress,
                blocking=blocking,
                stop=stop,
            )
        )
    finally:
        sink.flush()


async def _to_db(
    items: Iterator[JournalRecord | JournalProblem],
    url: str,
    cfg: GathererConfig,
    replayer: Replayer,
    speed: float | None,
    on_progress: Callable[[int], None] | None,
    blocking: bool,
    writers: Writers,
) -> ReplayStats:
    return await _until_signal(
        lambda stop: replay_into_db(
            items,
            url,
            cfg.store,
            replayer=replayer,
            speed=speed,
            on_progress=on_progress,
            blocking=blocking,
            writers=writers,
            stop=stop,
        )
    )


async def _until_signal(run: Callable[[trio.Event], Awaitable[ReplayStats]]) -> ReplayStats:
    """``run(stop)`` with Ctrl-C (SIGINT) and SIGTERM setting ``stop``: the replay stops
    reading, writes (or spools) and counts what it made, and reports (``_report``: exit 1).
    A second signal cancels at once: what was handed to the writers is committed or
    spooled, not counted."""
    stop = trio.Event()
    stats: ReplayStats | None = None
    async with stop_on_signals(soft=stop) as nursery:
        stats = await run(stop)
        nursery.cancel_scope.cancel()
    if stats is None:
        fail(
            "stopped by a second signal: the rows handed to the writers were committed or"
            " spooled (the spool is written on the next replay); replay the journal again"
        )
    return stats


def _say(target: Console, text: str) -> None:
    target.print(text, markup=False, highlight=False, soft_wrap=True)


def _per_table(counts: Counter[str]) -> str:
    return ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items())) or "none"


def _report(stats: ReplayStats, continuity: Continuity, *, to_stdout: bool) -> None:
    """Problems one per line on stderr, a summary, and exit 1 if any line was corrupt."""
    out = err_console if to_stdout else console
    for problem in stats.problems:
        _say(err_console, f"{problem.path}:{problem.line_no}: {problem.reason}")
    rows = ", ".join(f"{table} {n:,}" for table, n in sorted(stats.rows.items())) or "none"
    _say(out, f"replayed {stats.frames:,} frames ({stats.records:,} journal records); rows: {rows}")
    for line in session_lines(continuity):
        _say(out, line)
    for bad in stats.bad_frames:
        _say(err_console, bad)
    if stats.frame_problems:
        flagged = ", ".join(f"{k} {n:,}" for k, n in sorted(stats.frame_problems.items()))
        refused = sum(stats.frame_problems[k] for k in ("invalid", "unknown_type"))
        if refused > len(stats.bad_frames):
            flagged += f" (the first {len(stats.bad_frames)} refused listed above)"
        _say(out, f"frames flagged by the pipeline: {flagged}")
    if not to_stdout:
        _say(out, f"committed (new rows): {_per_table(stats.written)}")
        if stats.duplicate:
            _say(out, f"already stored (skipped): {_per_table(stats.duplicate)}")
        if stats.updated:
            _say(out, f"updated (a newer version of a stored row): {_per_table(stats.updated)}")
    if stats.left:
        left = ", ".join(f"{t} {n:,}" for t, n in sorted(stats.left.items()))
        _say(err_console, f"not written (spooled or dead-lettered): {left}")
    if stats.problems:
        # A file's torn end (a write cut short) is not a line lost in the middle: the lines
        # before the cut are read, and a write the journal disk refused is written again
        # whole to the gatherer's next file (kalshi.journal.writer), where it is read.
        torn = {p.path for p in stats.problems if p.reason.startswith(_TORN)}
        lost = sum(p.lines for p in stats.problems if not p.reason.startswith(_TORN))
        if lost:
            _say(err_console, f"{lost:,} line(s) not read (damaged, or of a file refused whole)")
        if torn:
            said = f"{len(torn):,} file(s) end torn, read up to the cut"
            if any(file_stamp(Path(name)) is not None for name in torn):  # a journal segment
                said += (
                    ": a write the journal disk refused was written again whole to the"
                    " gatherer's next file (read there); one cut by a crash was not"
                )
            _say(err_console, said)
        if len(stats.problems) > sum(problem.lines > 0 for problem in stats.problems):
            # a capture's frames too late to put back in order (kalshi.replay.source)
            _say(err_console, "seq out of order: read on in new sessions (listed above)")
    if stats.stopped:
        _say(
            err_console,
            f"stopped by a signal after {stats.records:,} journal records: the rows made"
            " until then are counted above; the rest of the journal was not replayed",
        )
    if stats.problems or stats.left or stats.stopped:
        raise SystemExit(1)
