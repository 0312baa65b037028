"""``transport: wsproto``: wsproto's sans-IO protocol driven directly by a Trio stream.

trio-websocket runs a reader task that hands each message over a channel; here the
receiving task parses the bytes itself, which saves a task switch and a channel hop per
frame. Same interface and error mapping as the default transport.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from kalshi.errors import AuthError, ConnectionLost, HttpError
from kalshi.net.streams import READ_BYTES, StreamIO, closing, handshake, over_tcp, request_target

__all__ = ["wsproto_connect", "wsproto_over_stream"]


class _WsprotoConnection:
    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, max_frame_bytes: int) -> None:
        self._io = StreamIO(stream)
        self._ws = ws
        self._max = max_frame_bytes
        self._events: deque[Event] = deque()
        self._parts: list[bytes | str] = []
        self._size = 0
        self._closed: str | None = None
        self._code: int | None = None

    @property
    def heard(self) -> float:
        return self._io.heard

    async def _write(self, event: Event) -> None:
        await self._io.send_all(self._ws.send(event))

    async def _fill(self) -> None:
        self._ws.receive_data(await self._io.receive_some())
        self._events.extend(self._ws.events())

    async def receive(self) -> bytes | str:
        while True:
            while not self._events:
                if self._closed is not None:
                    raise ConnectionLost(self._closed, self._code)
                await self._fill()
            event = self._events.popleft()
            if isinstance(event, TextMessage | BytesMessage):
                self._size += len(event.data)
                if self._size > self._max:
                    raise ConnectionLost(f"frame over {self._max} bytes")
                self._parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
                if event.message_finished:
                    parts, self._parts, self._size = self._parts, [], 0
                    if len(parts) == 1:
                        return parts[0]
                    return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]
            elif isinstance(event, Ping):
                await self._write(event.response())
            elif isinstance(event, Pong):
                self._io.pong(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self._closed = f"closed by peer: {event.code} {event.reason or ''}".strip()
                self._code = int(event.code)
                with suppress(ConnectionLost):
                    await self._write(event.response())
                raise ConnectionLost(self._closed, self._code)

    async def send(self, data: bytes | str) -> None:
        await self._write(TextMessage(data if isinstance(data, str) else data.decode()))

    async def ping(self) -> None:
        payload, waiter = self._io.expect_pong()
        await self._write(Ping(payload))
        await waiter.wait()


async def _handshake(
    stream: trio.abc.Stream, ws: WSConnection, host: str, target: str, headers: Mapping[str, str]
) -> list[Event]:
    request = Request(
        host=host,
        target=target,
        extra_headers=[(k.encode(), v.encode()) for k, v in headers.items()],
    )
    await stream.send_all(ws.send(request))
    while True:
        data = await stream.receive_some(READ_BYTES)
        if not data:
            raise ConnectionLost("connection closed during the handshake")
        ws.receive_data(bytes(data))
        events = list(ws.events())
        for i, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                return events[i + 1 :]
            if isinstance(event, RejectConnection):
                status = event.status_code
                if status in (401, 403):
                    raise AuthError(f"websocket handshake rejected with HTTP {status}")
                raise HttpError(status, "websocket handshake rejected")
            if isinstance(event, RejectData):  # pragma: no cover - follows RejectConnection
                continue


@asynccontextmanager
async def wsproto_over_stream(
    stream: trio.abc.Stream, url: str, headers: Mapping[str, str], max_frame_bytes: int
) -> AsyncIterator[_WsprotoConnection]:
    """A WebSocket client session over an already open ``stream`` (closed on exit)."""
    host, target = request_target(url)
    async with closing(stream):
        ws = WSConnection(ConnectionType.CLIENT)
        leftovers = await handshake(lambda: _handshake(stream, ws, host, target, headers))
        conn = _WsprotoConnection(stream, ws, max_frame_bytes)
        conn._events.extend(leftovers)
        yield conn


wsproto_connect = over_tcp(wsproto_over_stream)
