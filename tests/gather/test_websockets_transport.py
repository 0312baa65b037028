"""The `websockets` transport (the default) against hand-written server bytes over a memory
stream: framing, fragments, pings, empty pongs, close, and the frame size limit."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import struct

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from kalshi.errors import AuthError, ConnectionLost
from kalshi.net.websockets_transport import websockets_over_stream

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", head, len(payload)) + payload
    if len(payload) < 1 << 16:
        return struct.pack("!BBH", head, 126, len(payload)) + payload
    return struct.pack("!BBQ", head, 127, len(payload)) + payload


def unmask(data: bytes) -> tuple[int, bytes]:
    """Opcode and payload of one masked client frame."""
    (first,) = unmask_all(data)
    return first


def unmask_all(data: bytes) -> list[tuple[int, bytes]]:
    """Opcode and payload of each masked client frame (short ones) in ``data``."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        assert data[1] & 0x80 and length < 126  # clients mask; ours are short
        key, body = data[2:6], data[6 : 6 + length]
        frames.append((opcode, bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        data = data[6 + length :]
    return frames


async def serve(server: trio.testing.MemoryStreamPair, status: int = 101) -> bytes:  # type: ignore[valid-type]
    request = b""
    while b"\r\n\r\n" not in request:
        request += await server.receive_some(65536)  # type: ignore[attr-defined]
    key = next(
        line.split(b": ", 1)[1]
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    await server.send_all(  # type: ignore[attr-defined]
        b"HTTP/1.1 %d X\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" % status
        + b"Sec-WebSocket-Accept: "
        + accept
        + (b"" if status == 101 else b"\r\nContent-Length: 0")  # a refusal has a body
        + b"\r\n\r\n"
    )
    return request


async def test_frames_fragments_pings_and_close() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def exchange() -> None:
            request = await serve(server)
            assert b"KALSHI-ACCESS-KEY: k1" in request
            await server.send_all(
                frame(0x1, b'{"a":1}')
                + frame(0x9, b"heartbeat")
                + frame(0x1, b'{"b":', fin=False)
                + frame(0x0, b"2}", fin=True)
                + frame(0x1, b"x" * 70_000)
                + frame(0x8, struct.pack("!H", 1000) + b"bye")
            )

        nursery.start_soon(exchange)
        async with websockets_over_stream(
            client, "ws://h/trade-api/ws/v2", {"KALSHI-ACCESS-KEY": "k1"}, 1 << 20
        ) as ws:
            assert await ws.receive() == b'{"a":1}'
            assert await ws.receive() == b'{"b":2}'
            assert await ws.receive() == b"x" * 70_000
            with pytest.raises(ConnectionLost, match="closed by peer: 1000 bye"):
                await ws.receive()
            # one read brought every frame: the pong and the echoed close go out together
            assert unmask_all(await server.receive_some(65536)) == [
                (0xA, b"heartbeat"),
                (0x8, struct.pack("!H", 1000) + b"bye"),
            ]


async def test_an_empty_pong_counts_as_heard(autojump_clock: trio.testing.MockClock) -> None:
    """The exchange's pongs are empty (kalshi-api.md): ``heard`` moves on any frame."""
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def exchange() -> None:
            await serve(server)
            ping = await server.receive_some(65536)
            assert unmask(ping)[0] == 0x9
            await trio.sleep(7)
            await server.send_all(frame(0xA, b""))
            await trio.sleep(1)
            await server.send_all(frame(0x1, b"{}"))

        nursery.start_soon(exchange)
        async with websockets_over_stream(client, "ws://h/p", {}, 1000) as ws:
            start = ws.heard
            await ws.ping()
            assert await ws.receive() == b"{}"
            assert ws.heard - start == 8


async def test_an_oversized_frame_ends_the_session_with_1009() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def exchange() -> None:
            await serve(server)
            await server.send_all(frame(0x1, b"y" * 2000))

        nursery.start_soon(exchange)
        async with websockets_over_stream(client, "ws://h/p", {}, 1000) as ws:
            with pytest.raises(ConnectionLost, match="frame over 1000 bytes"):
                await ws.receive()
            opcode, payload = unmask(await server.receive_some(65536))
            assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1009))


async def test_a_fragmented_message_over_the_limit_ends_the_session() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def exchange() -> None:
            await serve(server)
            await server.send_all(
                frame(0x1, b"z" * 600, fin=False) + frame(0x0, b"z" * 600, fin=True)
            )

        nursery.start_soon(exchange)
        async with websockets_over_stream(client, "ws://h/p", {}, 1000) as ws:
            with pytest.raises(ConnectionLost, match="frame over"):
                await ws.receive()
            opcode, payload = unmask(await server.receive_some(65536))
            assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1009))


async def test_a_protocol_error_ends_the_session_with_1002() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def exchange() -> None:
            await serve(server)
            await server.send_all(frame(0x0, b"orphan continuation"))

        nursery.start_soon(exchange)
        async with websockets_over_stream(client, "ws://h/p", {}, 1000) as ws:
            with pytest.raises(ConnectionLost, match="websocket protocol error"):
                await ws.receive()
            opcode, payload = unmask(await server.receive_some(65536))
            assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1002))


async def test_a_refused_handshake_is_an_auth_error() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, server, 401)
        with pytest.raises(AuthError, match="HTTP 401"):
            async with websockets_over_stream(client, "ws://h/p", {}, 1000):
                pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(
                frame,
                st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),
                st.binary(max_size=300),
                st.booleans(),
            ),
        ),
        max_size=8,
    )
)
def test_any_server_bytes_give_messages_or_connection_lost(chunks: list[bytes]) -> None:
    """Hostile bytes after the handshake: each ``receive`` returns a message (bytes) or
    raises ConnectionLost; nothing else escapes, nothing hangs once the peer is gone."""

    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:

            async def exchange() -> None:
                await serve(server)
                # the client may end the session (and close its end) before the last chunk
                with contextlib.suppress(trio.BrokenResourceError):
                    for chunk in chunks:
                        await server.send_all(chunk)
                await server.aclose()

            nursery.start_soon(exchange)
            with trio.fail_after(5):
                async with websockets_over_stream(client, "ws://h/p", {}, 200) as ws:
                    with pytest.raises(ConnectionLost):
                        while True:
                            assert type(await ws.receive()) is bytes

    trio.run(main)


def _reference(data: bytes, limit: int) -> list[bytes]:
    """The messages ``websockets``' own parser gives for ``data`` (an open session, all of
    it at once), up to a close frame or an error."""
    protocol = ClientProtocol(parse_uri("ws://h/p"), state=State.OPEN, max_size=limit)
    protocol.receive_data(data)
    messages, parts = [], []
    for event in protocol.events_received():
        assert isinstance(event, Frame)
        if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            parts.append(bytes(event.data))
            if event.fin:
                messages.append(b"".join(parts))
                parts = []
    return messages


_FRAMES = st.lists(
    st.one_of(
        st.builds(frame, st.sampled_from([0x1, 0x2]), st.binary(max_size=300)),  # simple
        st.builds(
            frame,
            st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),
            st.binary(max_size=300),
            st.booleans(),
        ),
        st.binary(max_size=12),  # garbage (a masked frame, a bad header)
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(_FRAMES, st.lists(st.integers(1, 400), max_size=30))
def test_frames_cut_from_any_reads_equal_the_protocols_own_parse(
    frames: list[bytes], cuts: list[int]
) -> None:
    """The frames the transport cuts itself (simple data frames) and the ones it hands the
    protocol whole, read in pieces of any size, give the messages ``websockets`` gives for
    the same bytes at once, in order, then ConnectionLost."""
    data = b"".join(frames)
    limit = 250
    expected = _reference(data, limit)

    async def main() -> list[bytes]:
        client, server = trio.testing.memory_stream_pair()
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def exchange() -> None:
                await serve(server)
                with contextlib.suppress(trio.BrokenResourceError):
                    rest = data
                    for cut in cuts:
                        await server.send_all(rest[:cut])
                        rest = rest[cut:]
                        await trio.lowlevel.checkpoint()  # a read each, as the pair allows
                    await server.send_all(rest)
                await server.aclose()

            nursery.start_soon(exchange)
            with trio.fail_after(5):
                async with websockets_over_stream(client, "ws://h/p", {}, limit) as ws:
                    with pytest.raises(ConnectionLost):
                        while True:
                            got.append(await ws.receive())
        return got

    assert trio.run(main) == expected
