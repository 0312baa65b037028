"""``transport: fast``: our own RFC 6455 client over a Trio stream, for the receive path.

Server frames are unmasked, so reading one is a header parse and a slice; this module does
exactly that over one growing buffer, answers pings, tracks pongs and reassembles fragments.
The handshake is a plain HTTP/1.1 upgrade checked against ``Sec-WebSocket-Accept``. Frames
we send are masked, as a client must. Errors map to :class:`ConnectionLost` like the other
transports; a frame over ``max_frame_bytes`` ends the session (close code 1009).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress

import trio

from kalshi.errors import AuthError, ConnectionLost, HttpError
from kalshi.net.streams import READ_BYTES, StreamIO, closing, handshake, over_tcp, request_target

__all__ = ["fast_connect", "fast_over_stream"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CONT, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_MAX_HEAD = 64 * 1024


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def encode_client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, final frame (clients must mask)."""
    key = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + key + _mask(payload, key)


class _FastConnection:
    __slots__ = (
        "_buf",
        "_closed",
        "_code",
        "_io",
        "_max",
        "_parts",
        "_pos",
        "_text",
    )

    def __init__(self, stream: trio.abc.Stream, leftover: bytes, max_frame_bytes: int) -> None:
        self._io = StreamIO(stream)
        self._buf = bytearray(leftover)
        self._pos = 0
        self._max = max_frame_bytes
        self._parts: list[bytes] = []
        self._text = True
        self._closed: str | None = None
        self._code: int | None = None

    @property
    def heard(self) -> float:
        return self._io.heard

    async def _write(self, data: bytes) -> None:
        await self._io.send_all(data)

    async def _fill(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += await self._io.receive_some()

    async def receive(self) -> bytes | str:
        while True:
            if self._closed is not None:
                raise ConnectionLost(self._closed, self._code)
            buf, pos = self._buf, self._pos
            available = len(buf) - pos
            if available < 2:
                await self._fill()
                continue
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if available < 4:
                    await self._fill()
                    continue
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if available < 10:
                    await self._fill()
                    continue
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            if length > self._max:
                await self._fail(1009, f"frame over {self._max} bytes")
            if available < head + length:
                await self._fill()
                continue
            start = pos + head
            payload = bytes(buf[start : start + length])
            if masked:
                payload = _mask(payload, bytes(buf[start - 4 : start]))
            self._pos = start + length
            opcode = b0 & 0x0F
            if b0 & 0x70:
                await self._fail(1002, "reserved bits set")
            if opcode in (_TEXT, _BINARY):
                if self._parts:
                    await self._fail(1002, "new message inside a fragmented one")
                if b0 & 0x80:
                    return payload.decode() if opcode == _TEXT else payload
                self._parts, self._text = [payload], opcode == _TEXT
            elif opcode == _CONT:
                if not self._parts:
                    await self._fail(1002, "continuation without a message")
                self._parts.append(payload)
                if sum(map(len, self._parts)) > self._max:
                    await self._fail(1009, f"message over {self._max} bytes")
                if b0 & 0x80:
                    data, self._parts = b"".join(self._parts), []
                    return data.decode() if self._text else data
            elif opcode == _PING:
                await self._write(encode_client_frame(_PONG, payload))
            elif opcode == _PONG:
                self._io.pong(payload)
            elif opcode == _CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                reason = payload[2:].decode(errors="replace")
                self._closed = f"closed by peer: {code} {reason}".strip()
                self._code = code if len(payload) >= 2 else None
                with suppress(ConnectionLost):
                    await self._write(encode_client_frame(_CLOSE, payload[:2]))
                raise ConnectionLost(self._closed, self._code)
            else:
                await self._fail(1002, f"unknown opcode {opcode}")

    async def _fail(self, code: int, why: str) -> None:
        self._closed = why
        with suppress(ConnectionLost):
            await self._write(encode_client_frame(_CLOSE, struct.pack("!H", code)))
        raise ConnectionLost(why)

    async def send(self, data: bytes | str) -> None:
        await self._write(
            encode_client_frame(_TEXT, data.encode() if isinstance(data, str) else data)
        )

    async def ping(self) -> None:
        payload, waiter = self._io.expect_pong()
        await self._write(encode_client_frame(_PING, payload))
        await waiter.wait()


async def _handshake(
    stream: trio.abc.Stream, host: str, target: str, headers: Mapping[str, str]
) -> bytes:
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = bytearray()
    while b"\r\n\r\n" not in response:
        if len(response) > _MAX_HEAD:
            raise ConnectionLost("websocket handshake: response head too large")
        data = await stream.receive_some(READ_BYTES)
        if not data:
            raise ConnectionLost("connection closed during the handshake")
        response += data
    head, _, rest = bytes(response).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status != 101:
        if status in (401, 403):
            raise AuthError(f"websocket handshake rejected with HTTP {status}")
        raise HttpError(status, "websocket handshake rejected")
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    expected = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
    if fields.get("sec-websocket-accept") != expected:
        raise ConnectionLost("websocket handshake: wrong Sec-WebSocket-Accept")
    return rest


@asynccontextmanager
async def fast_over_stream(
    stream: trio.abc.Stream, url: str, headers: Mapping[str, str], max_frame_bytes: int
) -> AsyncIterator[_FastConnection]:
    """A WebSocket client session over an already open ``stream`` (closed on exit)."""
    host, target = request_target(url)
    async with closing(stream):
        leftover = await handshake(lambda: _handshake(stream, host, target, headers))
        yield _FastConnection(stream, leftover, max_frame_bytes)


fast_connect = over_tcp(fast_over_stream)
