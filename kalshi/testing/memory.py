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

__all__ = ["memory_connector"]


def memory_connector(sim: Any) -> Connector:
    """Connect to ``sim`` (a :class:`~kalshi.sim.SimExchange`) through a memory stream pair:
    the simulator serves one end exactly as it serves a TCP connection."""

    @asynccontextmanager
    async def connect(
        url: str, headers: Mapping[str, str], max_frame_bytes: int
    ) -> AsyncIterator[WsConnection]:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sim.serve_connection, server)
            async with websockets_over_stream(client, url, headers, max_frame_bytes) as conn:
                yield conn
            nursery.cancel_scope.cancel()

    return connect
