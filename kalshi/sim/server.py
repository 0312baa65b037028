"""The simulated exchange: one port serving REST and the WebSocket.

The port is the project's HTTP layer (:class:`~kalshi.http.server.HttpServer`, unbounded).
A request to ``/trade-api/ws/v2`` asking for an upgrade is authenticated (RSA-PSS headers,
clock-skew window), answered ``101`` and served by the Kalshi protocol
(:class:`~kalshi.sim.broker.SimSession`, a :class:`~kalshi.http.ws.Session`) fed by the
engine through the :class:`~kalshi.sim.broker.Broker`; anything else is a REST GET answered
by :class:`~kalshi.sim.rest.RestApi`, with keep-alive. :class:`SimExchange` is the sessions'
:class:`~kalshi.http.ws.Feed`: the engine's messages, its books, and the faults.
"""

from __future__ import annotations

import random
import socket
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import BinaryIO, Final

import orjson
import trio
import trio.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kalshi.auth import (
    ACCESS_KEY,
    ACCESS_SIGNATURE,
    ACCESS_TIMESTAMP,
    generate_rsa_key_pem,
    verify_signature,
)
from kalshi.book import OrderBook
from kalshi.clock import WallClock, system_wall_us
from kalshi.http.server import UNBOUNDED, HttpServer, Request, Response, Upgrade, listen
from kalshi.http.ws import (
    DEFAULT_BUFFER,
    MAX_COMMANDS_PER_S,
    Feed,
    Session,
    Subscription,
    envelope,
    ws_frame,
)
from kalshi.models.paths import WS_PATH
from kalshi.sim.broker import WITH_DATA, Broker, SimSession
from kalshi.sim.engine import Engine
from kalshi.sim.faults import FaultPlan, Faults
from kalshi.sim.rest import API_ROOT, TOO_MANY, RestApi
from kalshi.sim.truth import SimEvent, Truth
from kalshi.sim.universe import Universe

__all__ = ["WS_PATH", "SimExchange", "open_sim_exchange"]

MAX_CONNECTIONS_PER_USER: Final = 200
DEFAULT_SKEW_S: Final = 5.0
_BLAST_CHUNK: Final = 256 * 1024


class SimExchange(Feed):
    """A running simulated exchange (made by :func:`open_sim_exchange`).

    ``rest_url``/``ws_url`` to connect, ``key_id``/``private_key_pem`` to sign with,
    ``truth`` (what happened), ``faults`` (inject now), ``engine`` (pause/resume/step).
    """

    def __init__(
        self,
        *,
        markets: int,
        rate: float,
        seed: int,
        active: int | None = None,
        tier: str | None = "basic",
        auth: str = "rsa",
        private_key_pem: bytes | None = None,
        key_id: str | None = None,
        clock: WallClock = system_wall_us,
        skew_s: float = DEFAULT_SKEW_S,
        lifecycle_every: float | None = None,
        blast: bool = False,
        blast_events: int = 100_000,
        buffer_limit: int = DEFAULT_BUFFER,
        start_us: int | None = None,
        run_id: int | None = None,
        connections_per_user: int = MAX_CONNECTIONS_PER_USER,
        keep_events: bool = True,
        truth_stream: BinaryIO | None = None,
        trade_window_s: float | None = None,
        busy: int | None = None,
        burst_every: float | None = None,
        burst_x: float = 20.0,
        burst_seconds: float = 10.0,
        market_cap: int | None = None,
        command_rate: float = MAX_COMMANDS_PER_S,
        rest_latency: float = 0.0,
    ) -> None:
        if auth not in ("rsa", "none"):
            raise ValueError("auth must be 'rsa' or 'none'")
        if rest_latency < 0:
            raise ValueError(f"rest_latency must be >= 0, got {rest_latency}")
        self.rest_latency = rest_latency  # seconds each REST answer waits; may change any time
        self.clock = clock
        self.auth = auth
        self.skew_ms = int(skew_s * 1000)
        self.buffer_limit = buffer_limit
        self.connections_per_user = connections_per_user  # 200 by default; more on higher tiers
        self.market_cap = market_cap
        self.command_rate = command_rate
        self.universe = Universe(markets, clock() if start_us is None else start_us, seed)
        self.truth = Truth(
            self.universe,
            keep_events=keep_events,
            stream=truth_stream,
            trade_window_s=trade_window_s,
        )
        self.broker = Broker()
        self.sessions: set[SimSession] = set()
        self._frames_closed = 0  # text frames queued on sessions that ended
        self.faults = Faults(self.truth.faults_injected, lambda: list(self.sessions))
        self.engine = Engine(
            self.universe,
            self.truth,
            rate=rate,
            active=50 if active is None else active,
            seed=seed,
            clock=clock,
            run_id=clock() if run_id is None else run_id,
            lifecycle_every=lifecycle_every,
            busy=busy,
            burst_every=burst_every,
            burst_x=burst_x,
            burst_seconds=burst_seconds,
        )
        self.engine.publish = self.broker.publish
        self.rest = RestApi(self, tier)
        self.private_key_pem = private_key_pem or generate_rsa_key_pem()[0]
        key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        self._public_key = key.public_key()
        self.key_id = key_id or str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))
        self.private_key_path: Path | None = None
        self.rest_url = ""
        self.ws_url = ""
        self.port = 0
        self._per_user: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        self.blast_books: dict[str, OrderBook] | None = None
        self.blast_events: list[SimEvent] | None = None
        self._blast_cache: dict[tuple[object, ...], tuple[list[bytes], int]] = {}
        self._blasts: dict[Subscription, trio.CancelScope] = {}
        self._http = HttpServer(self._rest, websocket=self._upgrade, limits=UNBOUNDED)
        if blast:
            self._pregenerate(blast_events)

    # --- engine hooks -------------------------------------------------------------------------

    def _pregenerate(self, count: int) -> None:
        self.blast_books = {t: b.copy() for t, b in self.truth.books.items()}
        self.engine.pause()
        while self.truth.generated < count and self.engine.active_tickers:
            self.engine.step(64)
        self.blast_events = list(self.truth.events)

    @property
    def frames_sent(self) -> int:
        """Text frames queued for WebSocket clients so far (data, replies; not the chunks of
        a blast), ended sessions included: once the engine is paused and the clients
        are quiet, what they must have read to have everything."""
        return self._frames_closed + sum(s.frames for s in self.sessions)

    @property
    def outbox_bytes(self) -> tuple[int, int]:
        """(total, largest) data bytes the sessions have queued and not yet handed to their
        sockets: a client reading slowly, or a simulator too busy to write, shows here."""
        sizes = [s.outbox_bytes for s in self.sessions]
        return sum(sizes), max(sizes, default=0)

    def now_ms(self) -> int:
        """The exchange's time for a new message (ms; never earlier than the last one)."""
        return self.engine._stamp(self.clock() // 1000)

    def market_id(self, ticker: str) -> str:
        info = self.universe.get(ticker)
        return "" if info is None else info.market_id

    # --- what the sessions serve (kalshi.http.ws.Feed) ------------------------------------------

    def lost(self) -> bool:
        if trio.current_time() < self.faults.unanswered_until:
            self.faults.count("unanswered")
            return True
        return False

    def bare_subscribed(self) -> bool:
        if trio.current_time() < self.faults.bare_subscribed_until:
            self.faults.count("bare_subscribed")
            return True
        return False

    def count(self, fault: str) -> None:
        self.faults.count(fault)

    def add(self, sub: Subscription, tickers: list[str] | None) -> None:
        if self.blast_events is None:
            self.broker.add(sub, tickers)

    def remove(self, sub: Subscription, tickers: Iterable[str] | None = None) -> None:
        self.broker.remove(sub, tickers)
        if tickers is None and (scope := self._blasts.pop(sub, None)) is not None:
            scope.cancel()

    def subscribed(self, sub: Subscription) -> None:
        if self.blast_events is None or sub.channel not in WITH_DATA:
            return
        chunks, count = self.blast_chunks(sub, sub.seq)
        sub.seq += count
        scope = self._blasts[sub] = trio.CancelScope()
        session = sub.session

        async def blast() -> None:
            with scope:
                for chunk in chunks:
                    await session.wait_writable()
                    session.push_chunk(chunk)

        session.start_soon(blast)

    def overflow(self, sub: Subscription) -> None:
        self.truth.undelivered["overflow"] += 1

    def book(self, sub: Subscription, ticker: str) -> tuple[str, OrderBook | None] | None:
        info = self.universe.get(ticker)
        if info is None:
            return None
        books = self.blast_books
        book = books.get(ticker) if books is not None else None
        return info.market_id, book or self.truth.books.get(ticker)

    def ticker(self, ticker: str) -> bytes | None:
        event = self.engine.last_ticker.get(ticker) or self.engine.ticker_snapshot(ticker)
        return None if event is None else event.body

    def blast_chunks(self, sub: Subscription, start_seq: int) -> tuple[list[bytes], int]:
        """Pre-encoded frames of every pre-generated message ``sub`` wants (cached)."""
        tickers = None if sub.tickers is None else frozenset(sub.tickers)
        key = (sub.channel, sub.sid, start_seq, tickers, sub.use_yes_price)
        cached = self._blast_cache.get(key)
        if cached is not None:
            return cached
        chunks: list[bytes] = []
        parts: list[bytes] = []
        size = 0
        seq = start_seq
        sequenced = sub.sequenced
        count = 0
        for event in self.blast_events or ():
            if event.channel != sub.channel or (
                tickers is not None and event.ticker not in tickers
            ):
                continue
            body = event.yes_body if sub.use_yes_price and event.yes_body else event.body
            if sequenced:
                seq += 1
                frame = ws_frame(envelope(event.type, body, sid=sub.sid, seq=seq))
            else:
                frame = ws_frame(envelope(event.type, body, sid=sub.sid))
            count += 1
            parts.append(frame)
            size += len(frame)
            if size >= _BLAST_CHUNK:
                chunks.append(b"".join(parts))
                parts, size = [], 0
        if parts:
            chunks.append(b"".join(parts))
        result = (chunks, seq - start_seq if sequenced else 0)
        self._blast_cache[key] = result
        return result

    # --- public helpers -----------------------------------------------------------------------

    def add_market(self, **kwargs: object) -> str:
        """Create a market now and announce it (see :meth:`Engine.add_market`)."""
        return self.engine.add_market(**kwargs)  # type: ignore[arg-type]

    def settle_market(self, ticker: str, result: str = "yes") -> None:
        """Close, determine and settle ``ticker`` now (see :meth:`Engine.settle_market`)."""
        self.engine.settle_market(ticker, result)

    async def drain(self) -> None:
        """Wait until every connection has handed all its queued frames to its socket."""
        for session in list(self.sessions):
            await session.wait_flushed()

    async def connect_memory(self) -> trio.abc.Stream:
        """A client stream wired to this exchange in memory (no socket): speak HTTP or the
        WebSocket handshake on it, e.g. with ``trio_websocket.wrap_client_stream``."""
        assert self._nursery is not None, "the exchange is not running"
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self.serve_connection, server)
        return client

    # --- connections --------------------------------------------------------------------------

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one client connection (HTTP keep-alive, or one WebSocket session)."""
        if trio.current_time() < self.faults.refuse_until:
            self.faults.count("refuse")
            _reset(stream)
            await stream.aclose()
            return
        await self._http.serve_connection(stream)

    async def _rest(self, request: Request) -> Response:
        if self.rest_latency > 0:  # the request's way in: the exchange sees it this late
            await trio.sleep(self.rest_latency)
        now = trio.current_time()
        if now < self.faults.rest_429_until:
            self.faults.count("rest429")
            return TOO_MANY
        if now < self.faults.rest_5xx_until:
            self.faults.count("rest5xx")
            return Response(
                503, b'{"error":{"code":"service_unavailable","message":"service unavailable"}}'
            )
        who = request.peer
        headers = request.headers
        if ACCESS_KEY.lower() in headers or ACCESS_SIGNATURE.lower() in headers:
            key_id, problem = self.authenticate(headers, request.method, request.path)
            if problem:
                return _unauthorized(problem, self.clock())
            who = f"key:{key_id}"
        if not self.rest.allow(who):
            return TOO_MANY
        return self.rest.handle(request)

    def authenticate(self, headers: Mapping[str, str], method: str, path: str) -> tuple[str, str]:
        """(key id, "") when the three signing headers are valid, else ("", the problem)."""
        key_id = headers.get(ACCESS_KEY.lower(), "")
        stamp = headers.get(ACCESS_TIMESTAMP.lower(), "")
        signature = headers.get(ACCESS_SIGNATURE.lower(), "")
        missing = [
            name
            for name, value in (
                (ACCESS_KEY, key_id),
                (ACCESS_TIMESTAMP, stamp),
                (ACCESS_SIGNATURE, signature),
            )
            if not value
        ]
        if missing:
            return "", "missing header " + ", ".join(missing)
        if key_id != self.key_id:
            return "", "unknown API key"
        if not stamp.isdigit():
            return "", "invalid timestamp"
        if abs(self.clock() // 1000 - int(stamp)) > self.skew_ms:
            return "", "timestamp outside the allowed window"
        if not verify_signature(
            self._public_key, (stamp + method.upper() + path).encode(), signature
        ):
            return "", "invalid signature"
        return key_id, ""

    async def _upgrade(self, request: Request, upgrade: Upgrade) -> Response | None:
        if request.path != WS_PATH:
            return Response(404, b'{"error":{"code":"not_found","message":"not found"}}')
        user = "anonymous"
        if self.auth == "rsa":
            key_id, problem = self.authenticate(request.headers, "GET", request.path)
            if problem:
                return _unauthorized(problem, self.clock())
            user = key_id
        if self._per_user[user] >= self.connections_per_user:
            return TOO_MANY
        self._per_user[user] += 1

        def closed(session: Session) -> None:
            if session in self.sessions:
                self._frames_closed += session.frames
            self.sessions.discard(session)  # type: ignore[arg-type,unused-ignore]  # a SimSession
            self._per_user[user] -= 1

        # Registered before the client sees the 101, so faults reach it from its first frame.
        session = SimSession(self, upgrade.stream, closed)
        self.sessions.add(session)
        try:
            trailing = await upgrade.accept()
        except BaseException:
            closed(session)
            raise
        if trailing is None:
            closed(session)
            return None
        await session.serve(trailing)
        return None


def _reset(stream: trio.abc.Stream) -> None:
    sock = getattr(stream, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _unauthorized(problem: str, now_us: int) -> Response:
    """A 401 with the exchange's JSON error and an HTTP ``Date`` from the exchange's clock
    (as any HTTP server sends), which lets a client see that its own clock is off."""
    return Response(
        401,
        orjson.dumps({"error": {"code": "authentication_error", "message": problem}}),
        headers=(("date", formatdate(now_us / 1e6, usegmt=True)),),
    )


@asynccontextmanager
async def open_sim_exchange(
    markets: int = 50,
    rate: float = 500.0,
    seed: int = 1,
    faults: FaultPlan | None = None,
    port: int = 0,
    blast: bool = False,
    *,
    host: str = "127.0.0.1",
    **options: object,
) -> AsyncIterator[SimExchange]:
    """Run a simulated exchange on ``host:port`` (0: an ephemeral port) for the block.

    ``markets`` generated markets, of which ``active`` (default 50) trade at ``rate``
    messages/s in total; ``faults`` runs a schedule from the start; ``blast`` pre-generates
    ``blast_events`` messages and streams them to each subscription as fast as the socket
    takes them. Other options: ``tier`` (REST read budget: ``basic`` ... ``prestige`` or
    None for unlimited), ``auth`` (``rsa`` or ``none``), ``private_key_pem``, ``key_id`` (the
    API key id it accepts; default a UUID derived from ``seed``), ``clock``
    (wall µs), ``skew_s``, ``lifecycle_every`` (seconds between automatic settle+list),
    ``buffer_limit`` (outbox bytes per connection before error 25), ``start_us`` (the
    universe's epoch, Unix µs: it dates every generated ticker and status; default the clock's
    now, so tests pin it to be independent of the day they run); ``run_id`` (an int salting
    every id issued once for good: trade ids, the tickers and ids of markets added at run
    time; default the clock's now, so a restarted simulator never reissues an id, as the
    exchange never does; give the same one to reproduce a run exactly); ``market_cap`` (markets per
    subscription, beyond is error 26; default None, no cap) and ``command_rate`` (commands/s
    per session, burst the same, beyond is error 27; default 10 000); ``rest_latency`` (seconds
    each REST request waits before it is answered, on Trio's clock, as a far or loaded exchange;
    default 0; ``sim.rest_latency`` changes it at run time). For long runs at full size:
    ``keep_events=False`` keeps no generated message in memory, ``truth_stream`` (a binary
    file) receives them as JSON lines instead, ``trade_window_s`` keeps only that many
    seconds of trades for ``GET /markets/trades``; traffic: ``busy`` markets take 80 % of
    the actions, and every ``burst_every`` seconds the rate is ``burst_x`` times higher for
    ``burst_seconds``; ``connections_per_user`` (200: kalshi-api.md §2.6; higher API tiers
    allow more). Raises OSError if the
    port cannot be bound. Leaving the block closes every connection.
    """
    sim = SimExchange(markets=markets, rate=rate, seed=seed, blast=blast, **options)  # type: ignore[arg-type]
    listeners = await listen(host, port, "simulator")
    sim.port = listeners[0].socket.getsockname()[1]
    sim.rest_url = f"http://{host}:{sim.port}{API_ROOT}"
    sim.ws_url = f"ws://{host}:{sim.port}{WS_PATH}"
    async with trio.open_nursery() as nursery:
        sim._nursery = nursery
        await nursery.start(trio.serve_listeners, sim.serve_connection, listeners)
        if not blast:
            await nursery.start(sim.engine.run)
        if faults is not None:
            await nursery.start(faults.run, sim.faults)
        try:
            yield sim
        finally:
            nursery.cancel_scope.cancel()
