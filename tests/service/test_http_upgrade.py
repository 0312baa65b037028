"""The HTTP layer's WebSocket upgrade (RFC 6455 §4.2), which the simulator and
``replay --serve`` share: 101 with the key's accept value and the client's first WebSocket
bytes handed over, 400 for no handshake, a handler's refusal sent as is, plain requests
still routed on the same connection type."""

from __future__ import annotations

import trio
import trio.testing

from kalshi.http import UNBOUNDED, HttpServer, Request, Response, Upgrade, json_response

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example: accept is below
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def _head(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
             *extra]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _exchange(server: HttpServer, request: bytes) -> bytes:
    """Everything the server sends for ``request`` until it closes the connection."""
    client, end = trio.testing.memory_stream_pair()
    out = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, end)
        await client.send_all(request)
        while chunk := await client.receive_some(65536):
            out += chunk
    return out


async def test_an_upgrade_is_accepted_refused_or_malformed() -> None:
    handed: list[bytes | None] = []

    async def websocket(request: Request, upgrade: Upgrade) -> Response | None:
        if request.path != "/ws":
            return Response(404, b'{"error":"no"}')
        first = await upgrade.accept()
        handed.append(first)
        if first is not None:
            await upgrade.stream.send_all(b"ws:" + first)
        return None

    async def health(request: Request) -> Response:
        return json_response(200, {"ok": True})

    server = HttpServer({"/health": health}, websocket=websocket, limits=UNBOUNDED)
    with trio.fail_after(5):
        accepted = await _exchange(
            server,
            _head("/ws", f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13")
            + b"\x81\x80abcd",
        )
        head, _, rest = accepted.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 101 "
        assert f"sec-websocket-accept: {ACCEPT}".encode() in head.split(b"\r\n")
        assert rest == b"ws:\x81\x80abcd"  # the bytes sent with the handshake are the socket's
        malformed = await _exchange(server, _head("/ws", f"Sec-WebSocket-Key: {KEY}"))
        assert malformed.startswith(b"HTTP/1.1 400 ")
        assert malformed.endswith(
            b'{"error":{"code":"bad_request","message":"not a WebSocket handshake"}}'
        )
        refused = await _exchange(server, _head("/elsewhere"))
        assert refused.startswith(b"HTTP/1.1 404 ")
        assert refused.endswith(b'{"error":"no"}')
    assert handed == [b"\x81\x80abcd", None]


async def test_a_route_table_without_a_websocket_handler_serves_upgrades_as_requests() -> None:
    async def health(request: Request) -> Response:
        return json_response(200, {"peer": request.peer})

    server = HttpServer({"/health": health})
    client, end = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_connection, end)
            await client.send_all(_head("/health"))
            answer = b""
            while not answer.endswith(b"}\n"):
                answer += await client.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert answer.endswith(b'{"peer":"memory"}\n')
            await client.aclose()
