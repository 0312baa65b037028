"""A WebSocket connector that reaches a simulator over in-memory streams, no sockets, so
tests of timing (silence detection, backoff) run on Trio's ``autojump_clock``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from kalshi.net import Connector, WsConnection
from kalshi.net.websockets_transport import websockets_over_stream
from kalshi.net.ws import trio_websocket_over_stream

__all__ = ["OVER_STREAM", "memory_connector"]

OVER_STREAM: dict[str, Any] = {
    "websockets": websockets_over_stream,
    "trio-websocket": trio_websocket_over_stream,
}
"""Each transport's client over an already open stream, by its ``websocket.transport`` name."""


def memory_connector(
    sim: Any, transport: str = "websockets", *, lockstep: bool = False
) -> Connector:
    """Connect to ``sim`` (a :class:`~kalshi.sim.SimExchange`) through a memory stream pair,
    with ``transport``'s client: the simulator serves one end exactly as it serves a TCP
    connection. The pair buffers without bound, or, ``lockstep``, not at all: a send waits
    until the other side reads (a client that stops reading pushes back on the simulator,
    whose outbox then fills, as over TCP)."""
    over_stream = OVER_STREAM[transport]

    @asynccontextmanager
    async def connect(
        url: str, headers: Mapping[str, str], max_frame_bytes: int
    ) -> AsyncIterator[WsConnection]:
        pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        client, server = pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sim.serve_connection, server)
            async with over_stream(client, url, headers, max_frame_bytes) as conn:
                yield conn
            nursery.cancel_scope.cancel()

    return connect
