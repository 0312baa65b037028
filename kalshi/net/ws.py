"""WebSocket transports behind one small interface.

``connect(url, headers, max_frame_bytes)`` is an async context manager yielding a
:class:`WsConnection`. Foreign errors are mapped here: a refused handshake becomes
:class:`AuthError` (401/403) or :class:`HttpError`; anything that ends the socket becomes
:class:`ConnectionLost`. ``transport: trio-websocket`` is the default;
``transport: wsproto`` drives wsproto on a Trio stream directly
(``wsproto_transport.py``); ``docs/performance.md`` compares their receive rates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import trio
import trio_websocket

from kalshi.errors import AuthError, ConfigError, ConnectionLost, HttpError

__all__ = ["TRANSPORTS", "Connector", "WsConnection", "get_transport"]


class WsConnection(Protocol):
    async def receive(self) -> bytes | str: ...

    async def send(self, data: bytes | str) -> None: ...

    async def ping(self) -> None:
        """Send a ping and return when its pong arrives."""
        ...


Connector = Callable[[str, Mapping[str, str], int], AbstractAsyncContextManager[WsConnection]]


class _TrioWs:
    __slots__ = ("_ws",)

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def receive(self) -> bytes | str:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionLost(f"closed by peer: {exc.reason}") from None

    async def send(self, data: bytes | str) -> None:
        try:
            await self._ws.send_message(data if isinstance(data, str) else data.decode())
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionLost(f"closed by peer: {exc.reason}") from None

    async def ping(self) -> None:
        try:
            await self._ws.ping()
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionLost(f"closed by peer: {exc.reason}") from None


@asynccontextmanager
async def _trio_websocket(
    url: str, headers: Mapping[str, str], max_frame_bytes: int
) -> AsyncIterator[WsConnection]:
    extra = [(k.encode(), v.encode()) for k, v in headers.items()]
    try:
        async with trio_websocket.open_websocket_url(
            url,
            extra_headers=extra,
            max_message_size=max_frame_bytes,
            message_queue_size=64,
            receive_buffer_size=1 << 16,
            connect_timeout=10,
            disconnect_timeout=2,
        ) as ws:
            yield _TrioWs(ws)
    except trio_websocket.ConnectionRejected as exc:
        status = exc.status_code or 0
        if status in (401, 403):
            raise AuthError(f"websocket handshake rejected with HTTP {status}") from None
        raise HttpError(status, "websocket handshake rejected") from None
    except trio_websocket.ConnectionTimeout:
        raise ConnectionLost("websocket connect timed out") from None
    except trio_websocket.HandshakeError as exc:
        raise ConnectionLost(f"websocket handshake failed: {exc!r}") from None
    except trio_websocket.ConnectionClosed as exc:
        raise ConnectionLost(f"closed by peer: {exc.reason}") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None


def _transports() -> dict[str, Connector]:
    from kalshi.net.frames import fast_connect
    from kalshi.net.wsproto_transport import wsproto_connect

    return {"trio-websocket": _trio_websocket, "wsproto": wsproto_connect, "fast": fast_connect}


TRANSPORTS: dict[str, Connector] = _transports()


def get_transport(name: str) -> Connector:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise ConfigError(
            f"websocket.transport: expected one of {sorted(TRANSPORTS)}, got {name!r}"
        ) from None
