"""Replay rate: journal frames/s through ``kalshi replay`` flat out, to /dev/null (JSON lines)
and into PostgreSQL, next to a bare ``orjson.loads`` loop over the same file, same run.

    python benchmarks/replay.py [--frames N] [--markets M] [--no-db] [--smoke] [--results DIR]

Every path reads the journal through ``read_records``, as ``kalshi replay`` does. The
journal is written by the real ``JournalWriter`` (zstd, as the gatherer records):
``connect`` markers, one order-book subscription snapshotting every market, then a mix of
~80% deltas, ~10% trades and ~10% ticker frames. The baseline reads the same file (zstd
stream, split lines) and calls ``orjson.loads`` on each line, nothing else: the floor any
replay pays. The goal is a replay/baseline ratio of at least 0.3.

Also: a real third-party capture (tests/data/kalshi-gold15m, gzip JSON lines wrapping each
frame with its receive time) through ``read_records`` and the pipeline, and the book of one
market at 10% and 50% of the journal (``snapshot --source journal --at``) read with and
without the point-in-time stop. The database run uses the shipped default configuration
(writers' batch sizes and flush intervals).

Where the time goes: CPU time a frame (this process, every thread; and the PostgreSQL
server's processes from /proc) for the journal read alone, read + pipeline, the JSON lines
replay, and the database replay with either write path (COPY first, as a replay writes;
staged, as the live gatherer writes), and COPY first with ``--writers process`` (the writer
process's CPU too, from ``RUSAGE_CHILDREN`` once it has been joined). CPU time does not
count other work on the cores.
"""

from __future__ import annotations

import itertools
import os
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import trio
import zstandard

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments, peak_rss_mib, scratch

from kalshi.config import ByteSize, GathererConfig, JournalConfig, SpoolConfig
from kalshi.journal import JournalRecord, JournalWriter
from kalshi.pipeline import FrameProcessor
from kalshi.replay import JsonlSink, Replayer, book_from_journal, replay, replay_into_db
from kalshi.replay.core import READ_BATCH
from kalshi.replay.source import SourceOptions, read_records
from kalshi.replay.writer_process import DEFAULT_WRITERS, Writers
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.store.schema import TABLES

BASE_US = 1_795_561_140_000_000
STEP_US = 10_000  # 100 frames/s: a 200,000-frame journal spans 33 minutes


def frames(count: int, markets: int) -> list[bytes]:
    tickers = [f"KXHIGHNY-26NOV25-B{50 + i}" for i in range(markets)]
    out = [
        orjson.dumps(
            {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
        )
    ]
    out.append(orjson.dumps({"id": 2, "type": "subscribed", "msg": {"channel": "trade", "sid": 2}}))
    out.append(
        orjson.dumps({"id": 3, "type": "subscribed", "msg": {"channel": "ticker", "sid": 3}})
    )
    seq = {1: 0, 2: 0}
    for i, ticker in enumerate(tickers):
        seq[1] += 1
        levels = [[f"0.{10 + j:02d}00", f"{100 + i + j}.00"] for j in range(0, 40, 2)]
        msg = {"market_ticker": ticker, "market_id": f"m-{i}", "yes_dollars_fp": levels[:10],
               "no_dollars_fp": levels[10:]}  # fmt: skip
        out.append(
            orjson.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": seq[1], "msg": msg})
        )
    n = 0
    while len(out) < count:
        n += 1
        ticker = tickers[n % markets]
        kind = n % 10
        ts_ms = BASE_US // 1000 + n
        if kind == 0:
            seq[2] += 1
            msg = {"trade_id": f"t-{n}", "market_ticker": ticker, "yes_price_dollars": "0.4200",
                   "no_price_dollars": "0.5800", "count_fp": "3.00", "taker_side": "yes",
                   "ts": ts_ms // 1000, "ts_ms": ts_ms}  # fmt: skip
            out.append(orjson.dumps({"type": "trade", "sid": 2, "seq": seq[2], "msg": msg}))
        elif kind == 5:
            msg = {"market_ticker": ticker, "market_id": "m", "price_dollars": "0.4200",
                   "yes_bid_dollars": "0.4100", "yes_ask_dollars": "0.4300",
                   "volume_fp": f"{n}.00", "open_interest_fp": "10.00", "ts": ts_ms // 1000,
                   "ts_ms": ts_ms}  # fmt: skip
            out.append(orjson.dumps({"type": "ticker", "sid": 3, "msg": msg}))
        else:
            seq[1] += 1
            # +1 then -1 on the same level keeps every book valid forever.
            change = "1.00" if (n // markets) % 2 == 0 else "-1.00"
            msg = {"market_ticker": ticker, "market_id": "m", "price_dollars": "0.3300",
                   "delta_fp": change, "side": "yes", "ts_ms": ts_ms}  # fmt: skip
            out.append(
                orjson.dumps({"type": "orderbook_delta", "sid": 1, "seq": seq[1], "msg": msg})
            )
    return out


async def write(root: Path, raw: list[bytes]) -> list[Path]:
    cfg = JournalConfig(dir=str(root), compress=True, rotate_bytes=ByteSize(1 << 40))
    writer = JournalWriter(cfg, "bench-1", wall_us=lambda: BASE_US)  # names match times
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for conn, channel in ((1, "orderbook_delta"), (2, "trade")):  # as the gatherer does
            writer.record_marker(conn, "connect", BASE_US, 0, label=channel, channels=[channel])
        for n, frame in enumerate(raw):
            conn = 1 if b'"sid":1' in frame[:40] or b'"channel":"orderbook' in frame else 2
            writer.record_frame(conn, n + 1, "in", BASE_US + n * STEP_US, n, frame)
            if n % 5000 == 0:
                await writer.flush()
        nursery.cancel_scope.cancel()
    return list(writer.files_closed)


def baseline(files: list[Path]) -> int:
    """Read, decompress, split, ``orjson.loads`` each line: the floor."""
    count = 0
    for path in files:
        with open(path, "rb") as fh:
            reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
            rest = b""
            while chunk := reader.read(1 << 20):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    orjson.loads(line)
                    count += 1
    return count


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def to_devnull(files: list[Path]) -> None:
    with open("/dev/null", "wb") as sink_file:
        sink = JsonlSink(sink_file)
        trio.run(partial(replay, read_records(files), sink, blocking=False))  # as the CLI
        sink.flush()


def read_only(files: list[Path]) -> None:
    for _ in read_records(files):  # what kalshi replay reads through
        pass


def pipeline_only(files: list[Path]) -> None:
    """Read and feed a batch at a time (``Replayer.feed_all``), as ``kalshi replay`` does."""
    replayer, items = Replayer(), read_records(files)
    while batch := list(itertools.islice(items, READ_BATCH)):
        replayer.feed_all(batch)


GOLD = Path(__file__).parent.parent / "tests" / "data" / "kalshi-gold15m" / "events"


def capture_frames() -> int:
    """The real capture through the reader and the pipeline; returns its frames."""
    replayer = Replayer()
    for item in read_records([GOLD]):
        replayer.feed(item)
    return replayer.stats.frames


def point_in_time(files: list[Path], ticker: str, at_us: int, stop: bool) -> None:
    options = SourceOptions(until_us=at_us if stop else None)
    book_from_journal(read_records(files, options), ticker, at_us)


def pipeline_alone(records: list[JournalRecord]) -> None:
    """``FrameProcessor.process`` of every ``in`` frame, the records already read: the
    pipeline's own cost, the floor of any replay through it."""
    proc = FrameProcessor("bench-1")
    for item in records:
        if item.kind == "frame" and item.direction == "in":
            proc.process(item.conn_id, item.frame_no, item.wall_us, item.raw)


def into_db(
    files: list[Path],
    url: str,
    tmp: Path,
    copy_new: bool = True,
    fed: list[float] | None = None,
    writers: Writers = DEFAULT_WRITERS,
) -> int:
    """Replay into the database; ``fed`` gets the perf_counter time the last batch was
    handed to the writers (the rest of the run is the writers catching up)."""
    cfg = GathererConfig(spool=SpoolConfig(dir=str(tmp / "spool"), dead_letter_dir=str(tmp / "dl")))

    def progress(_: int) -> None:
        if fed is not None:
            fed[:] = [time.perf_counter()]

    run = partial(
        replay_into_db,
        read_records(files),
        url,
        cfg.store,
        blocking=False,
        copy_new=copy_new,
        on_progress=progress,
        writers=writers,
    )
    return sum(trio.run(run).rows.values())


def cpu(fn: Callable[[], object], repeats: int = 3) -> float:
    """Least CPU time of this process (every thread) over ``repeats`` calls, seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended and been
    waited for: the replay's writer process once the replay returned (it joins it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(data_dir: Path) -> float:
    """CPU seconds the PostgreSQL server's processes have used: the postmaster, its
    children gone (counted in the postmaster's) and those alive (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = (data_dir / "postmaster.pid").read_text().split()[0]

    def fields(pid: str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()

    total = sum(int(v) for v in fields(postmaster)[11:15])  # utime stime cutime cstime
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = fields(pid)
        except (OSError, IndexError):
            continue  # gone meanwhile
        if stat[1] == postmaster:
            total += int(stat[11]) + int(stat[12])
    return total / tick


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--no-db", action="store_true", help="skip the database run")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.markets = 3_000, 20
    results = Results(
        "replay", {"frames": args.frames, "markets": args.markets, "best of (flat out)": 3}
    )
    rows: list[list[object]] = []
    with scratch("kalshi-replay-bench-") as tmp:
        raw = frames(args.frames, args.markets)
        files = trio.run(write, tmp / "journal", raw)
        size = sum(p.stat().st_size for p in files)
        results.data["config"]["journal MiB (zstd)"] = round(size / 2**20, 1)
        n = len(raw)
        # interleaved, least of 3: load drift on the shared cores hits each alike
        spent = {"base": float("inf"), "feed": float("inf"), "devnull": float("inf")}
        for _ in range(3):
            for name, fn in (("base", baseline), ("feed", pipeline_only), ("devnull", to_devnull)):
                spent[name] = min(spent[name], timed(partial(fn, files)))
        base, feed, devnull = (n / spent[k] for k in ("base", "feed", "devnull"))
        per_frame = 1e6 / n
        records = [r for r in read_records(files) if isinstance(r, JournalRecord)]
        cpu_rows: list[list[object]] = [
            ["bare orjson.loads loop over the journal lines", cpu(lambda: baseline(files))],
            ["journal read (decompress, lines, CRC, decode)", cpu(lambda: read_only(files))],
            ["pipeline alone (FrameProcessor.process, records already read)",
             cpu(lambda: pipeline_alone(records))],
            ["read + pipeline (Replayer.feed_all, a batch at a time)",
             cpu(lambda: pipeline_only(files))],
            ["read + pipeline + JSON lines (kalshi replay --format jsonl)",
             cpu(lambda: to_devnull(files))],
        ]  # fmt: skip
        records.clear()  # 200 000 records the CLI does not hold: the collector walked them
        rows += [
            ["bare orjson.loads loop over the journal lines", base, 1.0],
            ["read + pipeline, no output", feed, feed / base],
            ["kalshi replay --format jsonl > /dev/null", devnull, devnull / base],
        ]
        captured = 0

        def run_capture() -> None:
            nonlocal captured
            captured = capture_frames()

        capture = timed(run_capture)
        extra = [[f"real capture (gold15m, gzip, {captured:,} frames): reader + pipeline",
                  captured / capture, None]]  # fmt: skip
        times = []
        ticker = "KXHIGHNY-26NOV25-B50"
        for share in (10, 50):
            at = BASE_US + len(raw) * STEP_US * share // 100
            whole = timed(lambda at=at: point_in_time(files, ticker, at, stop=False))
            stopped = timed(lambda at=at: point_in_time(files, ticker, at, stop=True))
            times.append([f"book of one market at {share}% of the journal", whole, stopped])
        if not args.no_db:
            server = EmbeddedPostgres(tmp / "pg", settings={"fsync": "off"})
            server.start()
            try:
                migrate(server.url)
                # the default first: docs/performance.md's goal reads the first such row
                others = [w for w in ("inline", "process") if w != DEFAULT_WRITERS]
                for writers in (DEFAULT_WRITERS, *others):
                    with connect_db(server.url) as db:
                        db.execute(f"TRUNCATE {', '.join(TABLES)}")
                    written = 0
                    fed: list[float] = []

                    def run_db(writers: Writers = writers, fed: list[float] = fed) -> None:
                        nonlocal written
                        written = into_db(files, server.url, tmp, fed=fed, writers=writers)

                    start = time.perf_counter()
                    db_rate = n / timed(run_db)
                    fed_rate = n / (fed[0] - start)
                    rows.append(
                        [f"kalshi replay into PostgreSQL, --writers {writers} ({written:,} rows,"
                         " fsync off)", db_rate, db_rate / base]
                    )  # fmt: skip
                    rows.append(
                        ["  of which: frames handed to the writers (until the last batch)",
                         fed_rate, fed_rate / base]
                    )  # fmt: skip
                # CPU of each side: either write path inline, and the COPY path with the
                # writers in a second process (its CPU: this process's reaped children)
                for how, copy_new, writers in (
                    ("COPY first (copy_new)", True, "inline"),
                    ("staged insert, as live", False, "inline"),
                    ("COPY first, --writers process", True, "process"),
                ):
                    with connect_db(server.url) as db:
                        db.execute(f"TRUNCATE {', '.join(TABLES)}")
                    before = server_cpu(server.data_dir)
                    children = children_cpu()
                    start = time.process_time()
                    into_db(files, server.url, tmp, copy_new=copy_new, writers=writers)
                    ours = time.process_time() - start
                    child = children_cpu() - children
                    theirs = server_cpu(server.data_dir) - before
                    cpu_rows.append([f"into PostgreSQL, {how}: this process", ours])
                    if writers == "process":
                        cpu_rows.append([f"into PostgreSQL, {how}: the writer process", child])
                    cpu_rows.append([f"into PostgreSQL, {how}: the server's processes", theirs])
            finally:
                server.stop()
        results.table(
            "Replay (frames/s; goals: jsonl ratio >= 0.3, PostgreSQL >= 100 000 frames/s)",
            ["path", "frames/s", "ratio to bare orjson.loads"],
            rows + extra,
            note=f"Peak RSS {peak_rss_mib():.0f} MiB.",
        )
        results.table(
            "Where a frame's time goes (CPU µs a frame; least of 3 for the first five)",
            ["path", "µs a frame"],
            [[name, seconds * per_frame] for name, seconds in cpu_rows],
            note="CPU time, not wall time: other work on the shared cores does not count.",
        )
        results.table(
            "Point in time (seconds)", ["question", "whole journal read", "stop at the time"], times
        )
        results.write(args.results)


if __name__ == "__main__":
    main()
