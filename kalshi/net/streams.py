"""Opening the byte stream under a WebSocket: TCP, with TLS for ``wss://``."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import trio

from kalshi.errors import ConnectionLost

__all__ = ["handshake", "open_stream", "request_target"]

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0


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
