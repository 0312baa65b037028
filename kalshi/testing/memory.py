"""A WebSocket connector and a REST transport that reach a simulator over in-memory
streams, no sockets, so tests of timing (silence detection, backoff, the REST rate) run on
Trio's ``autojump_clock``: bytes in a memory stream are visible to Trio at once, where bytes
on a loopback socket may still be in the kernel when every task waits and the clock jumps."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpcore
import httpx
import trio
import trio.testing

from kalshi.net import Connector, WsConnection
from kalshi.net.websockets_transport import websockets_over_stream
from kalshi.net.ws import trio_websocket_over_stream

__all__ = ["OVER_STREAM", "memory_connector", "memory_transport"]

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


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's errors as httpx's (what :class:`~kalshi.net.RestClient` catches)."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise httpx.TimeoutException(str(exc)) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise httpx.TransportError(str(exc)) from exc


class _MemoryStream(httpcore.AsyncNetworkStream):
    """One connection for httpcore: a Trio stream (``timeout``: seconds on Trio's clock;
    the parameters are httpcore's interface, hence ASYNC109)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                return bytes(await self._stream.receive_some(max_bytes))
        except trio.TooSlowError:
            raise httpcore.ReadTimeout("read timed out") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpcore.ReadError(str(exc)) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self._stream.send_all(buffer)
        except trio.TooSlowError:
            raise httpcore.WriteTimeout("write timed out") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpcore.WriteError(str(exc)) from None

    async def aclose(self) -> None:
        await self._stream.aclose()


class _MemoryBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network: every connection a new memory stream pair served by ``sim``."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return _MemoryStream(await self._sim.connect_memory())

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        await self._stream.aclose()


class _MemoryTransport(httpx.AsyncBaseTransport):
    def __init__(self, sim: Any) -> None:
        self._pool = httpcore.AsyncConnectionPool(network_backend=_MemoryBackend(sim))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def memory_transport(sim: Any) -> httpx.AsyncBaseTransport:
    """An httpx transport (``RestClient(..., transport=...)``) whose connections are memory
    stream pairs served by ``sim`` (a :class:`~kalshi.sim.SimExchange`) exactly as it serves
    a TCP connection: the same HTTP/1.1 bytes, keep-alive, latency, faults and 429s; the
    request's host and port are not used. httpcore (httpx's own connection pool) speaks
    HTTP over them; its errors reach the caller as httpx's (``httpx.TransportError``,
    ``httpx.TimeoutException``), as over a socket."""
    return _MemoryTransport(sim)
