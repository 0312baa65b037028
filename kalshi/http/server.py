"""The one HTTP/1.1 server layer, on Trio and h11: the services' own endpoints (``/health``,
``/metrics``, ``/debug/markets``) and the simulator's REST and WebSocket port.

Why h11 and not hypercorn: the endpoints are a handful of GETs answering small in-memory
documents on loopback. h11 is already installed (httpx depends on it), is sans-IO, and lets
this module stay one page: ``trio.serve_listeners`` accepts, h11 parses, a route table
answers. There is no ASGI layer, no lifespan protocol, no second logging setup and no global
state, and the limits a small server needs (request-head size, body size, read and write
deadlines, concurrent connections) are explicit constants below rather than buried options.
A handler that raises answers 500 and is logged; it never brings the server (or the service
running it) down.

One :class:`HttpServer` serves either a route table (exact paths, GET and HEAD only: the
services) or one handler for every request (the simulator's REST, which answers its own 404
and 405), with :class:`Limits` per server; a ``websocket`` handler takes the requests that
ask for a WebSocket upgrade (RFC 6455 §4.2) on the same port and, once it accepts, the
connection is the WebSocket's (:mod:`kalshi.http.ws` speaks the Kalshi protocol on it).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs, urlsplit

import h11
import orjson
import trio
from attrs import frozen

__all__ = [
    "UNBOUNDED",
    "Handler",
    "HttpServer",
    "Limits",
    "Listening",
    "Request",
    "Response",
    "Upgrade",
    "WebSocketHandler",
    "json_response",
    "listen",
    "open_http_listeners",
    "read_request",
    "send_response",
    "serve_http",
    "serve_http_listeners",
]

log = logging.getLogger("kalshi.http")

_MAX_HEAD = 16 * 1024  # request line + headers
_MAX_BODY = 64 * 1024  # GET bodies are ignored, but read (and bounded) to keep the connection
_READ_TIMEOUT = 10.0  # to receive one whole request, and to wait on an idle keep-alive
_WRITE_TIMEOUT = 10.0
_MAX_CONNECTIONS = 64
_CHUNK = 16 * 1024
_LINGER = 1.0  # after an error answer, how long to drain what the client is still sending
_LINGER_BYTES = 1024 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


@frozen
class Request:
    """A parsed request: method, path, query (each name maps to all of its values),
    headers (lower-case names; repeated headers joined with ``", "``) and the client's
    address (``memory`` for an in-memory stream)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    peer: str = ""


@frozen
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


@frozen
class Limits:
    """One server's bounds: concurrent connections (None: no bound; over it, 503), the
    seconds to receive one whole request or wait on an idle keep-alive and to send one
    answer (``math.inf``: no deadline), and request-body bytes (None: no bound; over it,
    413). The defaults are the services'."""

    max_connections: int | None = _MAX_CONNECTIONS
    read_timeout: float = _READ_TIMEOUT
    write_timeout: float = _WRITE_TIMEOUT
    max_body: int | None = _MAX_BODY


# The simulated exchange: as many connections as its clients open, none timed out.
UNBOUNDED: Final = Limits(None, math.inf, math.inf, None)


class Upgrade:
    """A request to switch to the WebSocket protocol, not answered yet (RFC 6455 §4.2)."""

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection, request: Request) -> None:
        self.stream = stream
        self._conn = conn
        self._request = request

    async def accept(self) -> bytes | None:
        """Answer ``101 Switching Protocols`` (``Sec-WebSocket-Accept`` from the request's
        key) and return the bytes the client sent after its handshake (the WebSocket's
        first), or answer 400 and return None when the request is no valid handshake
        (no ``Sec-WebSocket-Key``, version not 13)."""
        headers = self._request.headers
        key = headers.get("sec-websocket-key", "")
        if not key or headers.get("sec-websocket-version") != "13":
            refusal = Response(
                400, b'{"error":{"code":"bad_request","message":"not a WebSocket handshake"}}'
            )
            await send_response(self.stream, self._conn, refusal, write_timeout=math.inf)
            return None
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest())
        switching = h11.InformationalResponse(
            status_code=101,
            headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept),
            ],
        )
        handshake = self._conn.send(switching)
        trailing, _ = self._conn.trailing_data
        await self.stream.send_all(handshake)
        return bytes(trailing)


# Takes a WebSocket upgrade: returns a refusal to send, or None once it has accepted (and
# served the WebSocket until it ended) or answered itself.
WebSocketHandler = Callable[[Request, Upgrade], Awaitable["Response | None"]]


@frozen
class Listening:
    """Where a server is listening (the real port, also when an ephemeral one was asked)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def json_response(status: int, document: object) -> Response:
    return Response(status, orjson.dumps(document) + b"\n")


class _Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def serve_http(
    host: str,
    port: int | None,
    routes: Mapping[str, Handler],
    *,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``routes`` (exact paths -> handlers) on ``host:port`` until cancelled.

    ``port=None`` binds an ephemeral port (for tests); a configured port of 0 means
    *disabled* and is the caller's business, so 0 is refused here. Calls
    ``task_status.started(Listening(host, port))`` once the socket listens. Only GET and
    HEAD are served. Raises ``OSError`` if the address cannot be bound; cancellation
    closes the listener and every open connection.
    """
    listeners = await open_http_listeners(host, port)
    await serve_http_listeners(listeners, routes, task_status=task_status)


async def open_http_listeners(
    host: str, port: int | None, what: str = "HTTP server"
) -> list[trio.SocketListener]:
    """Bind ``host:port`` (``None``: ephemeral) so that binding errors surface before any
    task starts. Raises ``ValueError`` for port 0 and ``OSError`` when binding fails (naming
    ``what``, the host and the port: :func:`listen`)."""
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535 (or None for an ephemeral port), got {port}")
    return await listen(host, port or 0, what)


async def listen(host: str, port: int, what: str) -> list[trio.SocketListener]:
    """TCP listeners on ``host:port`` (0: an ephemeral port) for ``what`` (the component,
    e.g. ``simulator`` or ``/health (http.port)``). Raises ``OSError`` (same errno) whose
    message names ``what``, the host and the port, e.g. ``simulator: cannot listen on
    127.0.0.1:8765: Address already in use``, so a clash says which server and where.
    Raises ``ValueError`` for a port outside 0-65535 (the resolver would take it modulo
    65536 and listen somewhere else)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: port must be 0-65535, got {port}")
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"{what}: cannot listen on {host}:{port}: {reason}") from exc


async def serve_http_listeners(
    listeners: list[trio.SocketListener],
    routes: Mapping[str, Handler],
    *,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve_http` on listeners from :func:`open_http_listeners` (closed on exit)."""
    address = listeners[0].socket.getsockname()
    server = HttpServer(routes)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.serve_connection, listeners)
        task_status.started(Listening(str(address[0]), int(address[1])))


class HttpServer:
    """Serves HTTP/1.1 connections (keep-alive) with ``routes``: a table of exact paths
    (GET and HEAD only, else 405; unknown paths 404) or one handler for every request.
    ``websocket`` takes the requests asking for a WebSocket upgrade (without it they are
    plain requests). A malformed request is answered 400, a handler that raises 500."""

    def __init__(
        self,
        routes: Mapping[str, Handler] | Handler,
        *,
        websocket: WebSocketHandler | None = None,
        limits: Limits = Limits(),  # frozen
    ) -> None:
        self._routes = routes
        self._websocket = websocket
        self._limits = limits
        self._open = 0

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one accepted connection until the client leaves (``trio.serve_listeners``
        calls this; so may a test, with an in-memory stream)."""
        self._open += 1
        limit = self._limits.max_connections
        try:
            async with stream:
                conn = h11.Connection(h11.SERVER, _MAX_HEAD)
                if limit is not None and self._open > limit:
                    busy = _error(503, "too many connections")
                    await send_response(stream, conn, busy, close=True)
                    await _linger(stream)
                    return
                await self._serve(stream, conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; nothing to answer
        except Exception:
            log.exception("http: connection failed")
        finally:
            self._open -= 1

    async def _serve(self, stream: trio.abc.Stream, conn: h11.Connection) -> None:
        limits = self._limits
        while True:
            event: h11.Request | None = None
            try:
                with trio.move_on_after(limits.read_timeout):
                    event = await read_request(stream, conn, max_body=limits.max_body)
            except h11.RemoteProtocolError as exc:
                bad = _error(exc.error_status_hint, str(exc))
                await send_response(stream, conn, bad, close=True)
                await _linger(stream)
                return
            except _Rejected as exc:
                await send_response(stream, conn, _error(exc.status, str(exc)), close=True)
                await _linger(stream)
                return
            if event is None:
                return  # a clean EOF, or no whole request within the deadline
            request = _request(event, _peer(stream))
            if self._websocket is not None and request.headers.get("upgrade", "").lower() == (
                "websocket"
            ):
                refusal = await self._websocket(request, Upgrade(stream, conn, request))
                if refusal is not None:
                    await send_response(stream, conn, refusal, write_timeout=limits.write_timeout)
                return  # the connection was the WebSocket's, or is refused
            response = await self._dispatch(request)
            await send_response(
                stream,
                conn,
                response,
                close=False,
                head=request.method == "HEAD",
                write_timeout=limits.write_timeout,
            )
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _dispatch(self, request: Request) -> Response:
        routes = self._routes
        if callable(routes):
            handler: Handler = routes
        else:
            found = routes.get(request.path)
            if found is None:
                return _error(404, f"no such path: {request.path}")
            if request.method not in ("GET", "HEAD"):
                error = _error(405, f"{request.method} not allowed")
                return Response(error.status, error.body, headers=(("allow", "GET, HEAD"),))
            handler = found
        try:
            return await handler(request)
        except Exception:
            log.exception("http: handler for %s failed", request.path)
            return _error(500, "internal error")


def _request(event: h11.Request, peer: str) -> Request:
    target = urlsplit(event.target.decode("ascii", "replace"))
    headers: dict[str, str] = {}
    for raw_name, raw_value in event.headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(
        event.method.decode("ascii", "replace"),
        target.path,
        parse_qs(target.query, keep_blank_values=True),
        headers,
        peer,
    )


def _peer(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "memory"
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return "unknown"


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


async def read_request(
    stream: trio.abc.Stream, conn: h11.Connection, *, max_body: int | None = _MAX_BODY
) -> h11.Request | None:
    """The next complete request on ``conn`` (its body read and dropped), or None at a
    clean EOF. Raises ``h11.RemoteProtocolError`` on a malformed request and an HTTP 413
    error (``status`` 413) on a body over ``max_body`` bytes (None: unbounded)."""
    request: h11.Request | None = None
    body = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(_CHUNK)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += len(event.data)
            if max_body is not None and body > max_body:
                raise _Rejected(413, f"request body over {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return request
        else:  # ConnectionClosed between requests
            return None


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close, then drain (briefly, boundedly) what the client is still sending:
    closing with unread input makes the kernel reset the connection, and the client
    could lose the error answer we just sent."""
    drained = 0
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    with trio.move_on_after(_LINGER):
        await stream.send_eof()
        while drained < _LINGER_BYTES:
            chunk = await stream.receive_some(_CHUNK)
            if not chunk:
                return
            drained += len(chunk)


async def send_response(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    response: Response,
    *,
    close: bool = False,
    head: bool = False,
    write_timeout: float = _WRITE_TIMEOUT,
) -> None:
    """Send ``response`` on ``conn`` (``content-length``, ``cache-control: no-store``,
    ``connection: close`` when ``close``; no body for ``head``), giving up silently after
    ``write_timeout`` seconds (a client that does not read). Nothing is sent when ``conn``
    cannot answer now."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("cache-control", "no-store"),
        *response.headers,
    ]
    if close:
        headers.append(("connection", "close"))
    with trio.move_on_after(write_timeout):
        start = h11.Response(
            status_code=response.status, headers=headers, reason=_reason(response.status)
        )
        await stream.send_all(conn.send(start))
        send_body = bool(response.body) and not head
        data = conn.send(h11.Data(data=response.body)) if send_body else b""
        await stream.send_all(data + conn.send(h11.EndOfMessage()))
