"""Sustained send rate of the simulated exchange, in messages/s, to 1 and to 10 connections.

normal: the live engine at an unreachable target rate (so the engine is the limit), every
        connection subscribed to orderbook_delta + trade on all trading markets.
blast:  pre-generated, pre-encoded frames streamed as fast as the sockets take them.
The clients run in the same process and only drain bytes (no parsing), so the figures are
what the simulator can push on this machine, shared with a minimal reader.

Run: python benchmarks/sim.py [--smoke] [--results DIR]
"""

from __future__ import annotations

import argparse
import base64
import os
import time

import trio
from _common import Results, arguments, peak_rss_mib

from kalshi.testing import signed_headers, sim

ACTIVE = 50
WINDOW = 3.0
BLAST_EVENTS = 200_000


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


def _command(tickers: list[str]) -> bytes:
    import orjson

    payload = orjson.dumps({"id": 1, "cmd": "subscribe", "params": {
        "channels": ["orderbook_delta", "trade"], "market_tickers": tickers}})  # fmt: skip
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big") if n >= 126 else bytes((0x81, 0x80 | n))
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


async def main(args: argparse.Namespace) -> None:
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
    parsed = parser.parse_args()
    if parsed.smoke:
        WINDOW, BLAST_EVENTS = 0.3, 5_000
    trio.run(main, parsed)
