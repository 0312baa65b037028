"""WebSocket transports behind one small interface.

``connect(url, headers, max_frame_bytes)`` is an async context manager yielding a
:class:`WsConnection`. Foreign errors are mapped here: a refused handshake becomes
:class:`AuthError` (401/403) or :class:`HttpError`; anything that ends the socket becomes
:class:`ConnectionLost`. ``transport: websockets`` (the default) drives the ``websockets``
package's sans-I/O protocol on a Trio stream (``websockets_transport.py``);
``transport: trio-websocket`` runs trio-websocket (a reader task and a message channel).
``docs/performance.md`` compares their receive rates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import trio
import trio_websocket

from kalshi.errors import AuthError, ConfigError, ConnectionLost, HttpError
from kalshi.net.streams import HeardStream, closing, handshake, open_stream, request_target

__all__ = [
    "TRANSPORTS",
    "Connector",
    "WsConnection",
    "get_transport",
    "trio_websocket_over_stream",
]

_DISCONNECT_TIMEOUT = 2.0


class WsConnection(Protocol):
    """One open WebSocket. ``heard`` is the Trio time bytes last arrived (data, ping, pong,
    anything: each proves the connection alive, kalshi-api.md §2.5)."""

    @property
    def heard(self) -> float: ...

    read_bytes: int
    """At most this many bytes a socket read: a whole-exchange connection reading ahead
    takes what the kernel holds (``websockets``; ``trio-websocket`` reads 64 KiB)."""

    def ready(self) -> bytes | str | None:
        """The next data message if it is already received and parsed, without waiting;
        ``None`` when :meth:`receive` would have to wait or handle anything else (a
        ``trio-websocket`` session always answers ``None``)."""
        ...

    async def receive(self) -> bytes | str: ...

    async def send(self, data: bytes | str) -> None: ...

    async def ping(self) -> None:
        """Send a ping; ``websockets`` returns once it is sent, ``trio-websocket`` when a
        pong (any payload: the exchange's are empty) arrives. Liveness reads ``heard``."""
        ...


def _lost(exc: trio_websocket.ConnectionClosed) -> ConnectionLost:
    reason = exc.reason
    code = getattr(reason, "code", None)
    return ConnectionLost(f"closed by peer: {reason}", code if isinstance(code, int) else None)


Connector = Callable[[str, Mapping[str, str], int], AbstractAsyncContextManager[WsConnection]]


class _TrioWs:
    __slots__ = ("_stream", "_ws", "read_bytes")

    def __init__(self, ws: trio_websocket.WebSocketConnection, stream: HeardStream) -> None:
        self._ws = ws
        self._stream = stream
        self.read_bytes = 1 << 16  # trio-websocket's receive_buffer_size; not changed by this

    @property
    def heard(self) -> float:
        return self._stream.heard

    def ready(self) -> None:
        return None  # trio-websocket's messages come through its reader task's channel

    async def receive(self) -> bytes | str:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _lost(exc) from None

    async def send(self, data: bytes | str) -> None:
        try:
            await self._ws.send_message(data if isinstance(data, str) else data.decode())
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionLost(f"closed by peer: {exc.reason}") from None

    async def ping(self) -> None:
        # An empty payload, so that the exchange's empty pong answers it (trio-websocket
        # matches pongs by payload); the caller keeps one ping in flight at a time.
        try:
            await self._ws.ping(b"")
        except trio_websocket.ConnectionClosed as exc:
            raise _lost(exc) from None


@asynccontextmanager
async def trio_websocket_over_stream(
    stream: trio.abc.Stream, url: str, headers: Mapping[str, str], max_frame_bytes: int
) -> AsyncIterator[WsConnection]:
    """trio-websocket over an open ``stream``, which the block owns: it is closed on every
    way out. (trio-websocket's own ``open_websocket`` leaves the socket open after a refused
    handshake, and after a peer that ends without a close frame, until garbage collection.)"""
    host, target = request_target(url)
    extra = [(k.encode(), v.encode()) for k, v in headers.items()]
    body: list[BaseException] = []
    heard = HeardStream(stream)
    async with closing(stream):
        try:
            async with trio.open_nursery() as nursery:
                try:
                    ws = await handshake(
                        lambda: trio_websocket.wrap_client_stream(
                            nursery,
                            heard,  # type: ignore[arg-type]  # any Trio stream will do
                            host,
                            target,
                            extra_headers=extra,
                            message_queue_size=64,
                            max_message_size=max_frame_bytes,
                            receive_buffer_size=1 << 16,
                        )
                    )
                    try:
                        yield _TrioWs(ws, heard)
                    except BaseException as exc:
                        body.append(exc)
                        raise
                    finally:
                        with trio.move_on_after(_DISCONNECT_TIMEOUT, shield=True):
                            await ws.aclose()  # the close handshake
                finally:
                    nursery.cancel_scope.cancel()  # the reader task, also after a failed handshake
        except BaseExceptionGroup as group:
            raise _only(group, body) from None


def _only(group: BaseExceptionGroup, body: list[BaseException]) -> BaseException:
    """The one exception the nursery of :func:`trio_websocket_over_stream` wrapped: the
    block's own, else the reader's (a refused handshake), else a cancellation."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if body and exc is body[0]:
            return exc
    errors = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    return errors[0] if errors else leaves[0]


@asynccontextmanager
async def _trio_websocket(
    url: str, headers: Mapping[str, str], max_frame_bytes: int
) -> AsyncIterator[WsConnection]:
    try:
        stream = await open_stream(url)
        async with trio_websocket_over_stream(stream, url, headers, max_frame_bytes) as ws:
            yield ws
    except trio_websocket.ConnectionRejected as exc:
        status = exc.status_code or 0
        if status in (401, 403):
            fields = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in exc.headers}
            raise AuthError(
                f"websocket handshake rejected with HTTP {status}",
                server_date=fields.get("date", ""),
                body=(exc.body or b"").decode("utf-8", "replace")[:500],
            ) from None
        raise HttpError(status, "websocket handshake rejected") from None
    except trio_websocket.HandshakeError as exc:
        raise ConnectionLost(f"websocket handshake failed: {exc!r}") from None
    except trio_websocket.ConnectionClosed as exc:
        raise _lost(exc) from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None


def _transports() -> dict[str, Connector]:
    from kalshi.net.websockets_transport import websockets_connect

    return {"websockets": websockets_connect, "trio-websocket": _trio_websocket}


TRANSPORTS: dict[str, Connector] = _transports()


def get_transport(name: str) -> Connector:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise ConfigError(
            f"websocket.transport: expected one of {sorted(TRANSPORTS)}, got {name!r}"
        ) from None
