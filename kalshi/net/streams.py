"""Opening the byte stream under a WebSocket: TCP, with TLS for ``wss://``."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio

from kalshi.errors import ConnectionLost

__all__ = ["open_stream"]

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
