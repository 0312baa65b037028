"""Sustained send rate of the simulated exchange, in messages/s, to 1 and to 10 connections;
and the simulator's CPU a message at full size.

normal: the live engine at an unreachable target rate (so the engine is the limit), every
        connection subscribed to orderbook_delta + trade on all trading markets.
blast:  pre-generated, pre-encoded frames streamed as fast as the sockets take them.
The clients run in the same process and only drain bytes (no parsing), so the figures are
what the simulator can push on this machine, shared with a minimal reader (``sim.json``).

fullsize (``sim-fullsize.json``): the scale run's simulator (benchmarks/fullscale/simproc.py,
its own process, the same options: 250 000 markets, 5 000 trading, 300 busy, market churn
every 60 s, the truth streamed to disk) at 20 000 msgs/s without bursts, subscribed as one
gatherer with the stock layout subscribes (kalshi/gather/layout.py): ``ticker`` and
``trade`` for the whole exchange on one connection each, both lifecycle channels on 2 each,
``orderbook_delta`` with every live market spread over 144 connections; the clients, in
this process, only drain bytes. Measured: the child's CPU time (user + system, ``/proc``)
over the window divided by the messages it generated, and by the frames it queued. CPU
time, not wall time: a figure that holds on a shared machine.

Run: python benchmarks/sim.py [--smoke] [--results DIR] [--mode rates|fullsize|both]
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
import time
from pathlib import Path

import trio
from _common import Results, arguments, peak_rss_mib
from fullscale.procstat import cpu_seconds
from fullscale.simproc import SimProcess

from kalshi.gather.registry import LIVE_STATUSES
from kalshi.sim.universe import Universe
from kalshi.testing import signed_headers, sim

ACTIVE = 50
WINDOW = 3.0
BLAST_EVENTS = 200_000
# fullsize: the scale run's simulator (benchmarks/fullscale/run.py), one gatherer's layout
FULL = {"markets": 250_000, "active": 5_000, "busy": 300, "rate": 20_000.0, "window": 30.0}
BOOK_CONNECTIONS = 144
LIFECYCLE_CONNECTIONS = 2
SEED, START_US = 20, 1_790_000_000_000_000


async def _open(port: int, headers: dict[str, str]) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = [
        "GET /trade-api/ws/v2 HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
        "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]  # fmt: skip
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += await stream.receive_some(4096)
    assert reply.startswith(b"HTTP/1.1 101"), reply
    return stream


def _command(tickers: list[str] | None, channels: tuple[str, ...] = ("orderbook_delta", "trade"),
             **flags: object) -> bytes:  # fmt: skip
    """A masked client text frame of one ``subscribe`` (``tickers`` None: the whole exchange)."""
    import orjson

    params: dict[str, object] = {"channels": list(channels), **flags}
    if tickers is not None:
        params["market_tickers"] = tickers
    payload = orjson.dumps({"id": 1, "cmd": "subscribe", "params": params})
    mask = os.urandom(4)
    n = len(payload)
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload) ^ int.from_bytes(repeated)).to_bytes(n)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + masked


async def _drain(stream: trio.SocketStream, counter: list[int], until: int | None) -> None:
    while until is None or counter[0] < until:
        data = await stream.receive_some(1 << 20)
        if not data:
            return
        counter[0] += len(data)


async def measure(connections: int, blast: bool) -> tuple[float, int]:
    """(messages/s, messages sent) for ``connections`` subscribers."""
    # A subscriber that falls behind would get error 25 (and lose frames): the benchmark
    # measures the send rate, so the outbox may grow as large as it needs.
    options: dict[str, object] = {"active": ACTIVE, "tier": None, "buffer_limit": 1 << 30}
    if blast:
        options["blast_events"] = BLAST_EVENTS
    async with sim(markets=ACTIVE * 2, rate=10_000_000.0, blast=blast, **options) as ex:
        ex.engine.pause()
        tickers = ex.engine.active_tickers
        streams = [await _open(ex.port, signed_headers(ex)) for _ in range(connections)]
        counters = [[0] for _ in streams]
        wanted = (
            sum(ex.truth.events_generated[k] for k in ("orderbook_delta", "trade")) if blast else 0
        )
        async with trio.open_nursery() as nursery:
            for stream, counter in zip(streams, counters, strict=True):
                nursery.start_soon(_drain, stream, counter, None)
            generated_before = ex.truth.events_generated.copy()
            start = time.perf_counter()
            for stream in streams:
                await stream.send_all(_command(tickers))
            if blast:
                while len(ex._blast_cache) < 2:  # noqa: ASYNC110  # polling a private probe
                    await trio.sleep(0.001)
                per_connection = sum(
                    len(chunk) for chunks, _ in ex._blast_cache.values() for chunk in chunks
                )
                while min(c[0] for c in counters) < per_connection:  # noqa: ASYNC110  # byte counters
                    await trio.sleep(0.001)
                elapsed = time.perf_counter() - start
                sent = wanted * connections
            else:
                ex.engine.resume()
                await trio.sleep(WINDOW)
                ex.engine.pause()
                await ex.drain()
                elapsed = time.perf_counter() - start
                diff = ex.truth.events_generated - generated_before
                sent = (diff["orderbook_delta"] + diff["trade"]) * connections
                assert not ex.truth.undelivered, ex.truth.undelivered
            nursery.cancel_scope.cancel()
        return sent / elapsed, sent


def _layout(tickers: list[str]) -> list[bytes]:
    """One subscribe frame per connection of one unsharded gatherer (kalshi/gather/layout.py):
    ``ticker`` and ``trade`` whole-exchange, each lifecycle channel on
    ``LIFECYCLE_CONNECTIONS``, the markets spread over ``BOOK_CONNECTIONS`` order-book
    connections (every ``BOOK_CONNECTIONS``-th market on each)."""
    commands = [
        _command(None, ("ticker",), skip_ticker_ack=True),
        _command(None, ("trade",), skip_ticker_ack=True),
    ]
    for channel in ("market_lifecycle_v2", "multivariate_market_lifecycle"):
        commands += [_command(None, (channel,)) for _ in range(LIFECYCLE_CONNECTIONS)]
    for i in range(BOOK_CONNECTIONS):
        part = tickers[i::BOOK_CONNECTIONS]
        commands.append(_command(part, ("orderbook_delta",), skip_ticker_ack=True))
    return commands


async def _quiet(child: SimProcess) -> dict[str, object]:
    """Until the child has handed every frame to its sockets and queued no new one for
    half a second (the subscriptions' snapshots; heartbeats still come); its last status."""
    last = -1
    while True:
        status = await child.status()
        if status["outbox_bytes"] == 0 and status["frames_sent"] == last:
            return status
        last = int(status["frames_sent"])
        await trio.sleep(0.5)


async def fullsize(window: float, workdir: Path) -> list[list[object]]:
    """The simulator's CPU a message at full size: one row."""
    options = {
        "markets": FULL["markets"],
        "active": FULL["active"],
        "busy": FULL["busy"],
        "rate": FULL["rate"],
        "seed": SEED,
        "start_us": START_US,
        "trade_window_s": 900.0,
        "lifecycle_every": 60.0,
        "connections_per_user": 160,
        "skew_s": 60.0,
    }
    universe = Universe(int(FULL["markets"]), START_US, SEED)
    tickers = [i.ticker for i in universe if universe.status(i) in LIVE_STATUSES]
    child = SimProcess(options, workdir / "truth.jsonl", workdir / "sim.log")
    await child.start()
    try:
        assert child.proc is not None
        port = int(child.ws_url.split(":")[2].split("/")[0])
        commands = _layout(tickers)
        streams = [await _open(port, signed_headers(child)) for _ in commands]  # type: ignore[arg-type]
        counters = [[0] for _ in streams]
        async with trio.open_nursery() as nursery:
            for stream, counter in zip(streams, counters, strict=True):
                nursery.start_soon(_drain, stream, counter, None)
            for stream, command in zip(streams, commands, strict=True):
                await stream.send_all(command)
            before = await _quiet(child)
            cpu_before = cpu_seconds(child.proc.pid)
            await child.resume()
            await trio.sleep(window)
            await child.pause()
            cpu = cpu_seconds(child.proc.pid) - cpu_before
            after = await _quiet(child)
            nursery.cancel_scope.cancel()
        generated = int(after["generated"]) - int(before["generated"])  # type: ignore[call-overload]
        frames = int(after["frames_sent"]) - int(before["frames_sent"])  # type: ignore[call-overload]
        assert not after["undelivered"], after["undelivered"]
        return [[
            len(tickers), len(commands), FULL["rate"], generated / window, cpu / window,
            generated, frames, cpu / generated * 1e6, cpu / frames * 1e6,
        ]]  # fmt: skip
    finally:
        await child.stop()


async def main_fullsize(args: argparse.Namespace) -> None:
    results = Results(
        "sim-fullsize",
        {
            "markets": FULL["markets"],
            "trading": FULL["active"],
            "busy": FULL["busy"],
            "target msgs/s": FULL["rate"],
            "window s": FULL["window"],
        },
    )
    with tempfile.TemporaryDirectory(prefix="kalshi-simfull-") as workdir:
        rows = await fullsize(FULL["window"], Path(workdir))
    results.table(
        "Simulator CPU a message at full size (its own process; one gatherer's subscriptions)",
        ["markets subscribed", "connections", "target msgs/s", "msgs/s", "cores",
         "messages", "frames", "CPU µs/message", "CPU µs/frame"],
        rows,
        note="CPU time of the simulator process (user + system) over the window; the"
        " machine is shared (see the load average).",
    )  # fmt: skip
    results.write(args.results)


async def main(args: argparse.Namespace) -> None:
    if args.mode in ("fullsize", "both"):
        await main_fullsize(args)
    if args.mode == "fullsize":
        return
    results = Results(
        "sim",
        {"trading markets": ACTIVE, "channels": "orderbook_delta + trade", "window s": WINDOW},
    )
    rows = []
    for blast in (False, True):
        for connections in (1, 10):
            rate, sent = await measure(connections, blast)
            rows.append(["blast" if blast else "normal", connections, rate, sent])
    results.table(
        "Simulator send rate (msgs/s; the clients only drain bytes)",
        ["mode", "connections", "msgs/s", "messages"],
        rows,
        note=f"Peak RSS {peak_rss_mib():.0f} MiB.",
    )
    results.write(args.results)


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--mode", choices=("rates", "fullsize", "both"), default="both")
    parsed = parser.parse_args()
    if parsed.smoke:
        WINDOW, BLAST_EVENTS = 0.3, 5_000
        FULL.update(markets=3_000, active=200, busy=20, window=1.0)
    trio.run(main, parsed)
