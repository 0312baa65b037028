"""A plain WebSocket client built from the reference (wsproto over any Trio stream), so the
tests see every frame the simulator sends: text, pings, close frames and resets."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from kalshi.book import OrderBook
from kalshi.models import BookDelta, BookSnapshot
from kalshi.models import Message as Decoded
from kalshi.sim import SimExchange
from kalshi.sim.server import WS_PATH
from kalshi.testing import signed_headers
from kalshi.wire import decode_ws


class Rejected(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class Client:
    """One WebSocket session: ``send`` a command, ``recv`` the next frame as
    ``("text", str)``, ``("ping", bytes)``, ``("pong", bytes)``, ``("close", code)`` or
    ``("eof", None)``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._pending: list[tuple[str, Any]] = []
        self._parts: list[str] = []
        self._next_id = 1

    async def handshake(self, headers: dict[str, str] | None) -> None:
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await self.stream.send_all(
            self.ws.send(Request(host="127.0.0.1", target=WS_PATH, extra_headers=extra))
        )
        status, body = 0, b""
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise Rejected(status, body)
            self.ws.receive_data(bytes(data))
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise Rejected(status, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise Rejected(status, body)

    async def send(self, cmd: str, params: dict[str, Any] | None = None) -> int:
        ident = self._next_id
        self._next_id += 1
        frame: dict[str, Any] = {"id": ident, "cmd": cmd}
        if params is not None:
            frame["params"] = params
        await self.send_text(orjson.dumps(frame).decode())
        return ident

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(Message(data=text)))

    async def recv(self) -> tuple[str, Any]:
        while not self._pending:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return ("reset", None)
            if not data:
                return ("eof", None)
            self.ws.receive_data(bytes(data))
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        self._pending.append(("text", "".join(self._parts)))
                        self._parts = []
                elif isinstance(event, Ping):
                    self._pending.append(("ping", bytes(event.payload)))
                    await self.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, Pong):
                    self._pending.append(("pong", bytes(event.payload)))
                elif isinstance(event, CloseConnection):
                    self._pending.append(("close", event.code))
        return self._pending.pop(0)

    async def text(self) -> dict[str, Any]:
        """The next text frame as JSON (pings are skipped)."""
        while True:
            kind, value = await self.recv()
            if kind == "text":
                result: dict[str, Any] = orjson.loads(value)
                return result
            if kind != "ping":
                raise AssertionError(f"expected a text frame, got {kind} {value!r}")

    async def until_reply(self, ident: int) -> list[dict[str, Any]]:
        """Every text frame up to and including the first reply carrying ``id``."""
        frames = []
        while True:
            frame = await self.text()
            frames.append(frame)
            if frame.get("id") == ident and frame["type"] in ("ok", "error", "subscribed"):
                return frames

    async def sync(self) -> list[dict[str, Any]]:
        """Everything sent before now: ends with the reply to a list_subscriptions."""
        frames = await self.until_reply(await self.send("list_subscriptions"))
        return frames[:-1]


@asynccontextmanager
async def connect(sim: SimExchange, headers: dict[str, str] | None = None, *,
                  memory: bool = False) -> AsyncIterator[Client]:  # fmt: skip
    """A signed (unless ``headers`` is given) WebSocket session to ``sim`` for the block;
    leaving it (or a refused handshake) closes the client's stream."""
    if memory:
        stream: trio.abc.Stream = await sim.connect_memory()
    else:
        stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
    async with stream:
        client = Client(stream)
        await client.handshake(signed_headers(sim) if headers is None else headers)
        yield client


def raw_upgrade(headers: dict[str, str]) -> bytes:
    lines = [
        f"GET {WS_PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Rebuilt:
    """Books rebuilt from decoded frames, checking seq per sid as it goes."""

    def __init__(self) -> None:
        self.books: dict[str, OrderBook] = {}
        self.last_seq: dict[int, int] = {}
        self.messages: list[Decoded] = []

    def feed(self, frame: dict[str, Any]) -> Decoded:
        decoded = decode_ws(orjson.dumps(frame))
        assert isinstance(decoded, Decoded), decoded
        self.messages.append(decoded)
        if decoded.seq is not None and decoded.sid is not None:
            expected = self.last_seq.get(decoded.sid, 0) + 1
            assert decoded.seq == expected, (decoded, expected)
            self.last_seq[decoded.sid] = decoded.seq
        body = decoded.body
        if isinstance(body, BookSnapshot):
            self.books[body.ticker] = OrderBook.from_snapshot(body)
        elif isinstance(body, BookDelta):
            self.books[body.ticker].apply_delta(body)
        return decoded
