"""A tiny HTTP/1.1 server for the services' own endpoints, on Trio and h11.

Why h11 and not hypercorn: the endpoints are a handful of GETs answering small in-memory
documents on loopback. h11 is already installed (httpx depends on it), is sans-IO, and lets
this module stay one page: ``trio.serve_listeners`` accepts, h11 parses, a route table
answers. There is no ASGI layer, no lifespan protocol, no second logging setup and no global
state, and the limits a small server needs (request-head size, body size, read and write
deadlines, concurrent connections) are explicit constants below rather than buried options.
A handler that raises answers 500 and is logged; it never brings the server (or the service
running it) down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import h11
import orjson
import trio
from attrs import frozen

__all__ = [
    "Handler",
    "Listening",
    "Request",
    "Response",
    "json_response",
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


@frozen
class Request:
    """A parsed request: method, path, query (each name maps to all of its values) and
    headers (lower-case names; repeated headers joined with ``", "``)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]


@frozen
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


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


async def open_http_listeners(host: str, port: int | None) -> list[trio.SocketListener]:
    """Bind ``host:port`` (``None``: ephemeral) so that binding errors surface before any
    task starts. Raises ``ValueError`` for port 0 and ``OSError`` when binding fails."""
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535 (or None for an ephemeral port), got {port}")
    return await trio.open_tcp_listeners(port or 0, host=host)


async def serve_http_listeners(
    listeners: list[trio.SocketListener],
    routes: Mapping[str, Handler],
    *,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`serve_http` on listeners from :func:`open_http_listeners` (closed on exit)."""
    address = listeners[0].socket.getsockname()
    server = _Server(dict(routes))
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.serve_connection, listeners)
        task_status.started(Listening(str(address[0]), int(address[1])))


class _Server:
    def __init__(self, routes: dict[str, Handler]) -> None:
        self._routes = routes
        self._open = 0

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        self._open += 1
        try:
            async with stream:
                conn = h11.Connection(h11.SERVER, _MAX_HEAD)
                if self._open > _MAX_CONNECTIONS:
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

    async def _serve(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        while True:
            request: h11.Request | None = None
            try:
                with trio.move_on_after(_READ_TIMEOUT):
                    request = await read_request(stream, conn)
            except h11.RemoteProtocolError as exc:
                bad = _error(exc.error_status_hint, str(exc))
                await send_response(stream, conn, bad, close=True)
                await _linger(stream)
                return
            except _Rejected as exc:
                await send_response(stream, conn, _error(exc.status, str(exc)), close=True)
                await _linger(stream)
                return
            if request is None:
                return  # a clean EOF, or no whole request within the deadline
            response = await self._dispatch(request)
            await send_response(stream, conn, response, close=False, head=request.method == b"HEAD")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _dispatch(self, event: h11.Request) -> Response:
        method = event.method.decode("ascii", "replace")
        target = urlsplit(event.target.decode("ascii", "replace"))
        handler = self._routes.get(target.path)
        if handler is None:
            return _error(404, f"no such path: {target.path}")
        if method not in ("GET", "HEAD"):
            error = _error(405, f"{method} not allowed")
            return Response(error.status, error.body, headers=(("allow", "GET, HEAD"),))
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = parse_qs(target.query, keep_blank_values=True)
        request = Request(method, target.path, query, headers)
        try:
            return await handler(request)
        except Exception:
            log.exception("http: handler for %s failed", target.path)
            return _error(500, "internal error")


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


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close, then drain (briefly, boundedly) what the client is still sending:
    closing with unread input makes the kernel reset the connection, and the client
    could lose the error answer we just sent."""
    drained = 0
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
