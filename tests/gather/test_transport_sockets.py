"""Every WebSocket transport closes the socket it opened when its block ends: after a reset,
a close frame, a refused handshake or a cancellation (a socket left to the garbage collector
is a file descriptor held by a dead connection, and a ResourceWarning)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from kalshi.errors import AuthError, ConnectionLost
from kalshi.net.ws import TRANSPORTS, get_transport
from kalshi.testing import signed_headers, sim


class _Recording(trio.abc.SocketFactory):
    """Makes ordinary Trio sockets and keeps each, to check afterwards that it was closed."""

    def __init__(self) -> None:
        self.opened: list[trio.socket.SocketType] = []

    def socket(
        self,
        family: socket.AddressFamily | int = socket.AF_INET,
        type: socket.SocketKind | int = socket.SOCK_STREAM,
        proto: int = 0,
    ) -> trio.socket.SocketType:
        sock = trio.socket.from_stdlib_socket(socket.socket(family, type, proto))
        self.opened.append(sock)
        return sock


@contextmanager
def _recording() -> Iterator[_Recording]:
    factory = _Recording()
    previous = trio.socket.set_custom_socket_factory(factory)
    try:
        yield factory
    finally:
        trio.socket.set_custom_socket_factory(previous)


async def _receive_until_lost(conn: object) -> None:
    with pytest.raises(ConnectionLost):
        while True:
            await conn.receive()  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("ending", ["reset", "close", "rejected", "cancelled"])
async def test_the_socket_is_closed_when_the_connection_ends(transport: str, ending: str) -> None:
    connect = get_transport(transport)
    async with sim(markets=10, active=1) as ex:
        headers = signed_headers(ex)
        if ending == "rejected":
            headers["KALSHI-ACCESS-KEY"] = "00000000-0000-4000-8000-000000000000"
        with trio.fail_after(20), _recording() as sockets:
            if ending == "rejected":
                with pytest.raises(AuthError):
                    async with connect(ex.ws_url, headers, 1 << 20):
                        pass
            elif ending == "cancelled":
                with trio.CancelScope() as scope:
                    async with connect(ex.ws_url, headers, 1 << 20) as conn:
                        scope.cancel()
                        await conn.receive()
                assert scope.cancelled_caught
            else:
                async with connect(ex.ws_url, headers, 1 << 20) as conn:
                    assert ex.faults.drop_connections(abrupt=ending == "reset") == 1
                    await _receive_until_lost(conn)
        assert len(sockets.opened) == 1
        assert [s.fileno() for s in sockets.opened] == [-1]
