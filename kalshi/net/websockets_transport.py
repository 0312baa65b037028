"""``transport: websockets`` (the default): the ``websockets`` package's sans-I/O client
protocol (:class:`websockets.client.ClientProtocol`: RFC 6455 framing, fragmentation, close
handling and the frame size limit, Autobahn-tested, C speedups) driven by a Trio stream.

The receiving task parses the bytes itself: no reader task, no channel hop per frame. The
protocol answers pings and close frames by itself; this module writes what it queues.
Liveness (kalshi-api.md §2.5): the exchange pings every 10 s and answers our pings with an
*empty* pong, so a pong cannot be matched to its ping; ``heard`` is the Trio time the last
bytes arrived (any frame: data, ping, pong), and the gatherer's silence check reads it.
A text frame is returned as its UTF-8 bytes, undecoded (the JSON decoder validates them).

Once the session is open, the bytes read are cut into frames here (:class:`_Splitter`): a
whole unfragmented text or binary frame (FIN, no RSV bit, unmasked, within the size limit)
is taken as its payload at once; every other frame (control, fragment, anything odd) goes
to the protocol whole, which then sits at a frame boundary again. The protocol's generator
parser cost ~2 µs a frame at 20 000 frames/s, a third of what reading and journaling a
frame costs (docs/performance.md); the exchange's data frames are all of the simple kind.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from kalshi.errors import AuthError, ConnectionLost, HttpError
from kalshi.net.streams import READ_BYTES, StreamIO, closing, handshake, over_tcp

__all__ = ["websockets_connect", "websockets_over_stream"]

_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE
_OPEN = State.OPEN
_SIMPLE = (0x81, 0x82)  # the first byte of an unfragmented text / binary frame, no RSV bit
_AT_EOF = StreamReader.at_eof.__code__  # where the parser waits between frames


def _at_boundary(protocol: ClientProtocol) -> bool:
    """Whether ``protocol`` is open, with no extension, no fragmented message begun and
    its parser waiting for a new frame with nothing buffered: whole frames may then be
    handed to it one by one. ``False`` whenever that cannot be told (the parser's state is
    read from its generator: another version of ``websockets`` only loses the fast path)."""
    if (
        protocol.state is not _OPEN
        or protocol.extensions
        or protocol.current_size is not None
        or protocol.reader.buffer
    ):
        return False
    waiting = protocol.parser  # the generator chain down to where it waits
    while (inner := getattr(waiting, "gi_yieldfrom", None)) is not None:
        waiting = inner
    return getattr(waiting, "gi_code", None) is _AT_EOF


class WebsocketsConnection:
    """One client session; ``receive`` is called by one task, ``send``/``ping`` by any."""

    __slots__ = ("_frames", "_io", "_need", "_parts", "_pending", "_protocol", "_split", "_text")

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol) -> None:
        self._io = StreamIO(stream)
        self._protocol = protocol
        # a simple data frame's payload (bytes), or a frame the protocol parsed
        self._frames: deque[bytes | Frame] = deque()
        self._parts: list[bytes] = []
        self._text = True
        self._split = _at_boundary(protocol)  # whole frames only go to the protocol
        self._pending: list[bytes] = []  # bytes read, not yet a whole frame (split mode)
        self._need = 2  # bytes the pending ones must reach before a frame can be cut

    @property
    def heard(self) -> float:
        """Trio time the last bytes arrived (any frame: data, ping, pong)."""
        return self._io.heard

    @property
    def read_bytes(self) -> int:
        """At most this many bytes a socket read (256 KiB unless set)."""
        return self._io.read_bytes

    @read_bytes.setter
    def read_bytes(self, size: int) -> None:
        self._io.read_bytes = size

    async def _flush(self) -> None:
        """Write what the protocol queued (pongs, close replies, our frames)."""
        data = b"".join(self._protocol.data_to_send())
        if data:
            await self._io.send_all(data)

    async def _fill(self) -> None:
        protocol = self._protocol
        try:
            data = await self._io.receive_some()
        except ConnectionLost:
            protocol.receive_eof()
            raise
        if self._split:
            self._cut(data)
        else:
            protocol.receive_data(data)
            self._frames.extend(protocol.events_received())  # type: ignore[arg-type]  # frames only once open
            self._split = _at_boundary(protocol)
        if protocol.writes:  # pongs, close replies; the receive loop reports the ending
            with suppress(ConnectionLost):
                await self._flush()

    def _cut(self, data: bytes) -> None:
        """Cut ``data`` (after the bytes pending) into frames: a simple data frame's payload
        straight into ``_frames``, any other whole frame through the protocol. A frame the
        protocol must judge before it is whole (masked, over the size limit) and everything
        after it go to the protocol, which ends the splitting."""
        pending = self._pending
        pending.append(data)
        have = sum(map(len, pending)) if len(pending) > 1 else len(data)
        if have < self._need:
            return
        buf = b"".join(pending) if len(pending) > 1 else data
        pending.clear()
        protocol = self._protocol
        frames = self._frames
        limit = protocol.max_message_size
        pos, end = 0, len(buf)
        while end - pos >= 2:
            first, size = buf[pos], buf[pos + 1]
            head = 2
            if size > 125:
                if size == 126:
                    head = 4
                elif size == 127:
                    head = 10
                else:  # masked: a protocol error the protocol names
                    break
                if end - pos < head:
                    self._need = head
                    pending.append(buf[pos:])
                    return
                size = int.from_bytes(buf[pos + 2 : pos + head], "big")
            if limit is not None and size > limit:
                break  # the protocol ends the session (1009) from the header
            stop = pos + head + size
            if stop > end:
                self._need = stop - pos
                pending.append(buf[pos:])
                return
            if first in _SIMPLE and protocol.current_size is None:
                frames.append(buf[pos + head : stop])
            else:  # a control frame, a fragment, a RSV bit, a bad opcode: whole
                protocol.receive_data(buf[pos:stop])
                frames.extend(protocol.events_received())  # type: ignore[arg-type]
                if not _at_boundary(protocol):
                    pos = stop
                    break
            pos = stop
        else:
            self._need = 2
            if pos < end:
                pending.append(buf[pos:])
            return
        self._split = False
        if pos < end:
            protocol.receive_data(buf[pos:])
            frames.extend(protocol.events_received())  # type: ignore[arg-type]

    def ready(self) -> bytes | None:
        """The next data message when it is already read and parsed (a whole text or
        binary frame first in line), without waiting; ``None`` otherwise: then
        :meth:`receive` takes what comes next (a fragment, a control frame, a close, the
        socket). The receiving task takes the frames of one socket read this way, with no
        coroutine per frame."""
        frames = self._frames
        if frames:
            frame = frames[0]
            if isinstance(frame, bytes):
                frames.popleft()
                return frame
            opcode = frame.opcode
            if (opcode is _TEXT or opcode is _BINARY) and frame.fin:
                frames.popleft()
                return bytes(frame.data)  # the parser's is a bytearray slice
        return None

    async def receive(self) -> bytes | str:
        """The next data message: ``bytes`` (a text frame's UTF-8 or a binary frame).
        Raises :class:`ConnectionLost` on a close frame, a protocol error, a frame over
        ``max_frame_bytes`` (close code 1009) or a broken stream."""
        frames = self._frames
        while True:
            while not frames:
                if self._protocol.state is not State.OPEN:
                    raise self._lost()
                await self._fill()
            frame = frames.popleft()
            if isinstance(frame, bytes):
                return frame
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if frame.fin:
                    return bytes(frame.data)  # the parser's is a bytearray slice
                self._parts, self._text = [bytes(frame.data)], opcode is _TEXT
            elif opcode is _CONT:
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    data, self._parts = b"".join(self._parts), []
                    return data
            elif opcode is _CLOSE:
                raise self._lost()
            # PING: the protocol queued the pong, written by _fill; PONG: `heard` says it

    def _lost(self) -> ConnectionLost:
        received = self._protocol.close_rcvd
        code = received.code if received is not None and received.code != 1005 else None
        return ConnectionLost(self._ending(), code)

    def _ending(self) -> str:
        protocol = self._protocol
        received = protocol.close_rcvd
        if received is not None:
            return f"closed by peer: {received.code} {received.reason}".strip()
        exc = protocol.parser_exc
        if isinstance(exc, PayloadTooBig):
            return f"frame over {exc.max_size} bytes"
        if exc is not None:
            return f"websocket protocol error: {exc}"
        return "connection closed without a close frame"

    async def send(self, data: bytes | str) -> None:
        """Send one text frame; raises :class:`ConnectionLost` once the session ended."""
        protocol = self._protocol
        if protocol.state is not State.OPEN:
            raise self._lost()
        protocol.send_text(data.encode() if isinstance(data, str) else data)
        await self._flush()

    async def ping(self) -> None:
        """Send a ping and return; its pong (empty on the real exchange) shows in
        ``heard``."""
        protocol = self._protocol
        if protocol.state is not State.OPEN:
            raise self._lost()
        protocol.send_ping(os.urandom(4))
        await self._flush()

    async def close(self) -> None:
        """Start the closing handshake (code 1000) when the session is still open."""
        if self._protocol.state is State.OPEN:
            self._protocol.send_close(1000)
            with suppress(ConnectionLost):
                await self._flush()


async def _handshake(
    stream: trio.abc.Stream, protocol: ClientProtocol, headers: Mapping[str, str]
) -> list[Frame]:
    request = protocol.connect()
    for name, value in headers.items():
        request.headers[name] = value
    protocol.send_request(request)
    await stream.send_all(b"".join(protocol.data_to_send()))
    while True:
        data = await stream.receive_some(READ_BYTES)
        if not data:
            raise ConnectionLost("connection closed during the handshake")
        protocol.receive_data(bytes(data))
        events = protocol.events_received()
        for i, event in enumerate(events):
            if isinstance(event, Response):
                exc = protocol.handshake_exc
                if isinstance(exc, InvalidStatus):
                    status = exc.response.status_code
                    if status in (401, 403):
                        raise AuthError(
                            f"websocket handshake rejected with HTTP {status}",
                            server_date=exc.response.headers.get("Date", ""),
                            body=(exc.response.body or b"").decode("utf-8", "replace")[:500],
                        )
                    raise HttpError(status, "websocket handshake rejected")
                if exc is not None:
                    raise ConnectionLost(f"websocket handshake failed: {exc}")
                return events[i + 1 :]  # type: ignore[return-value]  # frames follow
        if protocol.parser_exc is not None:
            raise ConnectionLost(f"websocket handshake failed: {protocol.parser_exc}")


@asynccontextmanager
async def websockets_over_stream(
    stream: trio.abc.Stream, url: str, headers: Mapping[str, str], max_frame_bytes: int
) -> AsyncIterator[WebsocketsConnection]:
    """A WebSocket client session over an already open ``stream`` (closed on exit, after a
    close frame when the session is still open). Messages over ``max_frame_bytes`` (also
    when fragmented) end the session. A refused upgrade raises :class:`AuthError` (401/403)
    or :class:`HttpError`; a broken or silent handshake :class:`ConnectionLost`."""
    async with closing(stream):
        protocol = ClientProtocol(parse_uri(url), max_size=max_frame_bytes)
        leftovers = await handshake(lambda: _handshake(stream, protocol, headers))
        conn = WebsocketsConnection(stream, protocol)
        conn._frames.extend(leftovers)
        try:
            yield conn
        finally:
            with trio.move_on_after(1, shield=True):
                await conn.close()


websockets_connect = over_tcp(websockets_over_stream)
