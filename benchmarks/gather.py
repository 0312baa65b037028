"""End-to-end gatherer throughput against the simulator's blast mode, next to the bare
receive loop of each transport in the same run; and peak RSS at 250 000 markets.

    python benchmarks/gather.py [--events 600000] [--markets 100] [--smoke] [--results DIR]

The simulator runs in its own process (as the real exchange would be elsewhere); the
gatherer writes into an embedded PostgreSQL in a temporary directory, with its journal on.
Every gatherer run uses the **shipped default configuration** (etc/gatherer.yaml's
defaults: writers, journal, spool, liveness) except the exchange's address and key, one
order-book connection and nothing else subscribed (the blast is one subscription), and no
metrics server; the ``tuned`` run also raises the order-book writer's batch to 5 000.

The default run also measures the whole machine's CPU a frame, first frame to the last row
committed: this process (every thread: the gatherer), the simulator's process and the
PostgreSQL server's processes. Their sum over the machine's cores is the fastest this
machine can carry the blast end to end with all three on it, whatever the split.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

sys.path.insert(0, str(Path(__file__).parent))
from _common import Results, arguments, peak_rss_mib
from replay import server_cpu

from kalshi.auth import Signer, load_private_key
from kalshi.config import JournalConfig, load_gatherer_config
from kalshi.gather.service import Gatherer
from kalshi.journal import JournalWriter
from kalshi.journal.format import encode_frame
from kalshi.net import RestClient, get_transport, system_wall_us
from kalshi.net.streams import READ_BYTES
from kalshi.pipeline import FrameProcessor
from kalshi.store import EmbeddedPostgres, migrate
from kalshi.wire import decode_ws, encode_command, subscribe_cmd

PORT = 8791
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def start_sim(events: int, markets: int, key: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kalshi",
            "sim",
            "--blast",
            "--blast-events",
            str(events),
            "--markets",
            str(markets),
            "--active",
            str(markets),
            "--port",
            str(PORT),
            "--tier",
            "none",
            "--key-file",
            str(key),
            "--lifecycle-every",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"key id\s+(\S+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("the simulator did not start")


async def tickers(rest_url: str) -> list[str]:
    async with RestClient(rest_url, rate=1000) as rest:
        return [m.ticker async for page in rest.market_pages() for m in page]


async def bare_receive(
    transport: str,
    url: str,
    signer: Signer,
    markets: list[str],
    journal_dir: str = "",
    keep: list[bytes] | None = None,
) -> tuple[int, float]:
    """Frames and seconds from the first to the last frame of one blast. With
    ``journal_dir``, each frame is also journaled as the gatherer does (stamped, one line,
    the shipped journal settings: zstd, flushed in a thread): the receive half of a
    gatherer split in two processes, the other doing decode, books and rows."""
    connect = get_transport(transport)
    headers = signer.headers("GET", url, system_wall_us() // 1000)
    count, first, last = 0, 0.0, 0.0
    async with trio.open_nursery() as nursery:
        journal = None
        if journal_dir:
            journal = JournalWriter(JournalConfig(dir=journal_dir), "bench-split")
            await nursery.start(journal.run)
        async with connect(url, headers, 1 << 24) as ws:
            await ws.send(encode_command(subscribe_cmd(1, ["orderbook_delta"], markets)))
            while True:
                with trio.move_on_after(2.0) as idle:
                    raw = await ws.receive()
                if idle.cancelled_caught:
                    break
                count += 1
                if keep is not None:
                    keep.append(raw if isinstance(raw, bytes) else raw.encode())
                if journal is not None:
                    journal.record_frame(
                        1, count, "in", system_wall_us(), time.monotonic_ns() // 1000, raw
                    )
                last = time.perf_counter()
                if count == 1:
                    first = last
        nursery.cancel_scope.cancel()
    return count, last - first


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


class Machine:
    """CPU seconds so far of the three parties of a run: this process (the gatherer, every
    thread), the simulator's process and the PostgreSQL server's processes."""

    def __init__(self, sim_pid: int, data_dir: Path) -> None:
        self.sim_pid, self.data_dir = sim_pid, data_dir

    def now(self) -> tuple[float, float, float]:
        return time.process_time(), process_cpu(self.sim_pid), server_cpu(self.data_dir)


async def gatherer_run(
    cfg_overrides: dict[str, object], db_url: str, machine: Machine
) -> tuple[int, float, float, float, tuple[float, ...]]:
    """Frames processed, seconds to process them (first frame to last), seconds until the
    database acknowledged every order-book row (nothing left in memory or in the spool),
    the CPU seconds of the event-loop thread from the first frame to the last, and the CPU
    seconds of the gatherer, the simulator and PostgreSQL from the first frame until every
    row was committed (:class:`Machine`)."""
    cfg = load_gatherer_config(None, overrides=cfg_overrides)
    signer = Signer(cfg.kalshi.api_key, load_private_key(cfg.kalshi.api_secret))
    gatherer = Gatherer(cfg, db_url, signer=signer)
    async with trio.open_nursery() as nursery:
        await nursery.start(gatherer.run)
        conn = gatherer.layout.connections[0]  # type: ignore[union-attr]
        while conn.messages == 0:  # noqa: ASYNC110 - polling the task under measurement
            await trio.sleep(0.001)
        start = time.perf_counter()  # from the first frame: listing and connecting excluded
        cpu_start, cpu_last = time.thread_time(), 0.0
        parties_start, parties_end = machine.now(), machine.now()
        store = gatherer.store
        assert store is not None
        books = ("orderbook_deltas", "orderbook_snapshots")

        def all_committed() -> bool:
            """Every order-book row handed over is committed (nothing in memory or spooled;
            the other tables, flushed on their own intervals, carry no blast rows)."""
            tables = store.stats().tables
            return all(tables[t].queue_rows == 0 and tables[t].spool_rows == 0 for t in books)

        seen, last_change, committed_at = 0, time.perf_counter(), None
        while committed_at is None or time.perf_counter() - last_change < 2.0:
            await trio.sleep(0.005)
            now = time.perf_counter()
            if conn.messages != seen:
                seen, last_change, committed_at = conn.messages, now, None
                cpu_last = time.thread_time()
            elif committed_at is None and all_committed():
                committed_at = now
                parties_end = machine.now()
        processed = last_change - start
        stored = committed_at - start
        nursery.cancel_scope.cancel()
    used = tuple(b - a for a, b in zip(parties_start, parties_end, strict=True))
    return conn.messages, processed, stored, cpu_last - cpu_start, used


def _cpu_us(frames: list[bytes], work: Callable[[list[bytes]], object]) -> float:
    """CPU µs a frame of ``work`` over ``frames``, best of three."""
    best = math.inf
    for _ in range(3):
        start = time.process_time()
        work(frames)
        best = min(best, time.process_time() - start)
    return best / len(frames) * 1e6


def _ws_stream(frames: list[bytes]) -> tuple[ClientProtocol, list[bytes]]:
    """A client protocol past its handshake, and the frames as the server sends them
    (unmasked text frames), cut in reads of the transport's size."""
    protocol = ClientProtocol(parse_uri("ws://127.0.0.1/"), max_size=1 << 24)
    request = protocol.connect()
    protocol.send_request(request)
    key = request.headers["Sec-WebSocket-Key"]
    accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
    protocol.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept.encode()
    )
    protocol.events_received()
    out = bytearray()
    for frame in frames:
        n = len(frame)
        head = (
            struct.pack("!BB", 0x81, n) if n < 126
            else struct.pack("!BBH", 0x81, 126, n) if n < 1 << 16
            else struct.pack("!BBQ", 0x81, 127, n)
        )  # fmt: skip
        out += head + frame
    return protocol, [bytes(out[i : i + READ_BYTES]) for i in range(0, len(out), READ_BYTES)]


def stage_costs(frames: list[bytes]) -> list[list[object]]:
    """CPU µs a frame of each step the gatherer's receiving task takes, over the blast's
    own frames, in this process (no socket, no database): where a frame's time goes."""
    protocol, reads = _ws_stream(frames)

    def parse(_: list[bytes]) -> None:
        for data in reads:
            protocol.receive_data(data)
            for event in protocol.events_received():
                bytes(event.data)

    def journal_line(batch: list[bytes]) -> None:
        for n, raw in enumerate(batch):
            encode_frame("bench", 1, n, "in", 1_796_000_000_000_000 + n, n, raw)

    def decode(batch: list[bytes]) -> None:
        for raw in batch:
            decode_ws(raw)

    def pipeline(batch: list[bytes]) -> None:
        processor = FrameProcessor("bench")
        for n, raw in enumerate(batch):
            processor.process(1, n, 1_796_000_000_000_000 + n, raw)

    return [
        ["WebSocket parse (websockets ClientProtocol)", _cpu_us(frames, parse)],
        ["journal line (encode_frame: JSON, CRC)", _cpu_us(frames, journal_line)],
        ["decode (decode_ws; part of the pipeline below)", _cpu_us(frames, decode)],
        ["pipeline (FrameProcessor.process: decode, seq, book, rows)", _cpu_us(frames, pipeline)],
    ]


def registry_rss(markets: int, books: int) -> float:
    """Peak RSS (MiB) of a registry of ``markets`` markets and ``books`` live books."""
    from kalshi.gather.registry import MarketRegistry
    from kalshi.models.book import BookSnapshot
    from kalshi.models.market import Market
    from kalshi.pipeline import FrameProcessor

    registry = MarketRegistry("bench")
    registry.upsert(
        (
            Market(
                ticker=f"KXBENCH-26NOV25-T{i}",
                event_ticker=f"KXBENCH-26NOV25-{i // 20}",
                status="active",
                title="benchmark market",
            )
            for i in range(markets)
        ),
        0,
    )
    processor = FrameProcessor("bench")
    from kalshi.book import OrderBook

    for i in range(books):
        snap = BookSnapshot(
            f"KXBENCH-26NOV25-T{i}",
            "",
            tuple((p * 1000, 1000 + p) for p in range(1, 21)),
            tuple((p * 1000, 500 + p) for p in range(1, 21)),
        )
        processor.books[snap.ticker] = OrderBook.from_snapshot(snap)
    return peak_rss_mib()


RUNS = (("websockets", "default"), ("websockets", "tuned"), ("trio-websocket", "default"))
TRANSPORTS = ("websockets", "trio-websocket")


def overrides(transport: str, config: str, tmp: str, rest_url: str, ws_url: str,
              key_id: str, key: Path) -> dict[str, object]:  # fmt: skip
    name = f"{transport}-{config}"
    out: dict[str, object] = {
        "gatherer_id": f"bench-{name}",
        "kalshi.rest_url": rest_url,
        "kalshi.ws_url": ws_url,
        "kalshi.api_key": key_id,
        "kalshi.api_secret": str(key),
        "kalshi.rest_rate_limit": 1000.0,
        "websocket.transport": transport,
        "websocket.orderbook_connections": 1,
        "websocket.trade_connections": 1,  # at least 1 (config.md); the blast sends no trades
        "websocket.ticker_connections": 0,
        "websocket.lifecycle_connections": 0,
        "websocket.markets_per_command": 1000,
        "spool.dir": f"{tmp}/spool-{name}",
        "spool.dead_letter_dir": f"{tmp}/dead-{name}",
        "journal.dir": f"{tmp}/journal-{name}",
        "snapshot_poller.enabled": False,
        "http.port": 0,
        "metrics.enabled": False,
    }
    if config == "tuned":
        out["writers.orderbook_deltas.batch_size"] = 5000
    return out


def main() -> None:
    parser = arguments(__doc__)
    # ~400 000 frames: seconds of blast, so the committed rate is the sustained one and not
    # the last batch's flush_interval (0.5 s by default) over a short burst
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--markets", type=int, default=100)
    parser.add_argument("--registry-markets", type=int, default=250_000)
    parser.add_argument("--registry-books", type=int, default=20_000)
    args = parser.parse_args()
    if args.smoke:
        args.events, args.markets = 5_000, 10
        args.registry_markets, args.registry_books = 2_500, 200
    results = Results(
        "gather",
        {"blast events": args.events, "markets": args.markets, "journal": "on (zstd)"},
    )
    # first, while this process is small: its peak RSS is the registry's, not the blast's
    # captured frames' (peak RSS only grows)
    registry = registry_rss(args.registry_markets, args.registry_books)
    rows: list[list[object]] = []
    bare: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # as root the embedded server runs as nobody
        key = Path(tmp) / "key.pem"
        sim, key_id = start_sim(args.events, args.markets, key)
        try:
            rest_url = f"http://127.0.0.1:{PORT}/trade-api/v2"
            ws_url = f"ws://127.0.0.1:{PORT}/trade-api/ws/v2"
            signer = Signer(key_id, load_private_key(str(key)))
            markets = trio.run(tickers, rest_url)
            bare_rows = []
            frames: list[bytes] = []
            for transport in TRANSPORTS:
                keep = frames if transport == "websockets" else None
                count, seconds = trio.run(
                    bare_receive, transport, ws_url, signer, markets, "", keep
                )
                bare[transport] = count / seconds
                bare_rows.append([transport, count, bare[transport]])
            count, seconds = trio.run(
                bare_receive, "websockets", ws_url, signer, markets, f"{tmp}/journal-split"
            )
            bare_rows.append(["websockets + journal (the receive half of a split)", count,
                              count / seconds])  # fmt: skip
            results.table(
                "Bare receive loop (frames, msgs/s)",
                ["transport", "frames", "msgs/s"],
                bare_rows,
                note="websockets + journal: each frame also stamped and journaled as the"
                " gatherer does; what a receiving process would reach if decode, books and"
                " rows ran in a second process (a prototype's bound, not a mode).",
            )
            with EmbeddedPostgres(Path(tmp) / "pg") as pg:
                migrate(pg.url)
                machine = Machine(sim.pid, pg.data_dir)
                for transport, config in RUNS:
                    cfg = overrides(transport, config, tmp, rest_url, ws_url, key_id, key)
                    count, processed, stored, cpu, used = trio.run(
                        gatherer_run, cfg, pg.url, machine
                    )
                    rows.append(
                        [transport, config, count, count / processed, count / stored,
                         count / processed / bare[transport], count / stored / bare[transport]]
                    )  # fmt: skip
                    if (transport, config) == ("websockets", "default"):
                        loop_us = cpu / count * 1e6
                        budget = [u / count * 1e6 for u in used]
        finally:
            sim.terminate()
            sim.wait()
    results.table(
        "Gatherer, simulator blast into PostgreSQL (msgs/s; goals: >= 100 000 processed,"
        " >= 50 000 committed, ratio >= 0.5)",
        ["transport", "config", "frames", "processed", "committed", "processed / bare",
         "committed / bare"],
        rows,
        note="processed: frames through journal, decode, book and rows into the writers'"
        " channels, first to last frame; committed: until the database acknowledged every row.",
    )  # fmt: skip
    stages = stage_costs(frames)
    results.table(
        "Where a frame's CPU goes (µs a frame, the receiving task's steps)",
        ["step", "µs"],
        [*stages, ["the gatherer's event-loop thread, whole (websockets, default)", loop_us]],
        note="each step alone over this blast's frames in this process, best of three; the"
        " whole: CPU time of the gatherer's event-loop thread per frame in the run above"
        " (also the row hand-off, the writers' Trio tasks, metrics, scheduling, GC).",
    )
    total = sum(budget)
    cores = os.cpu_count() or 1
    results.table(
        "The whole machine's CPU a frame (µs; websockets, default config, first frame to"
        " every row committed)",
        ["party", "µs a frame"],
        [
            ["the gatherer (this process, every thread)", budget[0]],
            ["the simulator's blast (its process)", budget[1]],
            ["PostgreSQL (the server's processes)", budget[2]],
            ["all three", total],
            [f"the most this machine carries end to end (msgs/s: {cores} cores / all three)",
             cores * 1e6 / total],
        ],
        note="CPU time, not wall time. The last row is a ceiling for any split of the"
        " gatherer over processes with the simulator and PostgreSQL on the same cores: it"
        " assumes every core busy all the time.",
    )  # fmt: skip
    benchmark_rss = peak_rss_mib()
    results.table(
        "Peak RSS (MiB; goal <= 1 024)",
        ["what", "MiB"],
        [
            ["this benchmark process after the runs", benchmark_rss],
            [f"registry of {args.registry_markets:,} markets + {args.registry_books:,} books"
             " (20 levels a side)", registry],
        ],
    )  # fmt: skip
    results.write(args.results)


if __name__ == "__main__":
    main()
