"""Opening the byte stream under a WebSocket: TCP, with TLS for ``wss://``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from kalshi.errors import ConnectionLost

__all__ = [
    "HeardStream",
    "StreamIO",
    "closing",
    "handshake",
    "open_stream",
    "over_tcp",
    "request_target",
]

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
READ_BYTES = 1 << 18
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


async def open_stream(url: str) -> trio.abc.Stream:
    """A connected stream to the host of ``url``; raises :class:`ConnectionLost`."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            tcp = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise ConnectionLost(f"connect to {host}:{port} failed: {exc!r}") from None
    if not secure:
        return tcp
    return trio.SSLStream(tcp, ssl.create_default_context(), server_hostname=host)


def request_target(url: str) -> tuple[str, str]:
    """``(host[:port], path[?query])`` of a WebSocket URL, for the upgrade request."""
    parts = urlsplit(url)
    return parts.netloc, parts.path + (f"?{parts.query}" if parts.query else "")


async def handshake(run: Callable[[], Awaitable[T]]) -> T:
    """Run a client's upgrade handshake within :data:`CONNECT_TIMEOUT`; a timeout or a
    broken stream is :class:`ConnectionLost` (a refusal is the caller's to map)."""
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            return await run()
    except trio.TooSlowError:
        raise ConnectionLost("websocket handshake timed out") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise ConnectionLost(f"websocket handshake failed: {exc!r}") from None


class StreamIO:
    """The byte side of a hand-driven WebSocket client: sends serialized (a pong, a ping
    and a command may go at once) and receives. Stream failures become
    :class:`ConnectionLost`. ``heard`` is the Trio time bytes last arrived
    (any frame, control frames too: liveness, kalshi-api.md §2.5)."""

    __slots__ = ("_lock", "heard", "read_bytes", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._lock = trio.StrictFIFOLock()
        self.heard = trio.current_time()
        self.read_bytes = READ_BYTES  # at most this much a receive

    async def send_all(self, data: bytes) -> None:
        async with self._lock:
            try:
                await self.stream.send_all(data)
            except _BROKEN as exc:
                raise ConnectionLost(f"send failed: {exc!r}") from None

    async def receive_some(self) -> bytes:
        try:
            data = await self.stream.receive_some(self.read_bytes)
        except _BROKEN as exc:
            raise ConnectionLost(f"receive failed: {exc!r}") from None
        if not data:
            raise ConnectionLost("connection closed without a close frame")
        self.heard = trio.current_time()
        return bytes(data)


class HeardStream(trio.abc.Stream):
    """``stream`` that notes in ``heard`` the Trio time its last bytes arrived: liveness
    for a transport whose reader we do not drive (trio-websocket answers pings itself)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.heard = trio.current_time()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.stream.receive_some(max_bytes)
        self.heard = trio.current_time()
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def closing(stream: trio.abc.Stream) -> AsyncIterator[trio.abc.Stream]:
    """Own ``stream`` for the block: closed on exit, within a second, even when cancelled."""
    try:
        yield stream
    finally:
        with trio.move_on_after(1, shield=True):
            await stream.aclose()


Over = Callable[[trio.abc.Stream, str, Mapping[str, str], int], AbstractAsyncContextManager[Any]]
"""``(stream, url, headers, max_frame_bytes)``: a client session over an open stream."""


def over_tcp(
    over: Over,
) -> Callable[[str, Mapping[str, str], int], AbstractAsyncContextManager[Any]]:
    """The transport (a connector) that opens the stream of ``url`` and runs ``over`` on it."""

    @asynccontextmanager
    async def connect(
        url: str, headers: Mapping[str, str], max_frame_bytes: int
    ) -> AsyncIterator[Any]:
        stream = await open_stream(url)
        async with over(stream, url, headers, max_frame_bytes) as conn:
            yield conn

    return connect
