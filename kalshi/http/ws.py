"""The server side of the Kalshi WebSocket protocol (kalshi-api.md §2), written once for
every server we run: ``kalshi sim`` (the simulated exchange) and ``kalshi replay --serve``
(a recording re-served).

A :class:`Session` is one connection after the handshake (:class:`~kalshi.http.server.Upgrade`).
It answers the commands (§2.2: ``subscribe``, ``unsubscribe``, ``update_subscription`` with
``add_markets``/``delete_markets``/``get_snapshot``, ``list_subscriptions``) with the
exchange's replies and errors (§2.3; subscription-scoped ones carry ``sid`` and consume a
``seq``, §2.4), numbers every subscription's ``seq``, pings every 10 s with ``heartbeat`` and
answers a client's ping with an empty pong (§2.5), and enforces the limits (§2.6: markets
per session, commands/s, the per-subscription market cap, a slow reader's error 25). What it
serves comes from its :class:`Feed`: the simulator's engine or a recording, each calling
:meth:`Session.deliver` with a message body.

Transport: ``wsproto`` parses what the client sends (masking, fragmentation, pings, close);
frames are built here (a server frame is an unmasked header plus the payload), so one
encoded body serves every subscriber and a feed can hand the socket large pre-built chunks
(the simulator's blast mode). Chosen by measurement: trio-websocket's ``send_message`` sends
28 000 msgs/s to one reader on the machine where this writer sends 768 000 (docs/simulator.md).
Everything a session sends goes through one outbox drained by one writer task, so replies and
data keep their order; the outbox can be held (``silent_until``, ``hold_until``) and a
sequenced frame skipped or repeated (``pending_skip``, ``pending_repeat``): the simulator's
faults act there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import orjson
import trio
import trio.lowlevel
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import RemoteProtocolError

from kalshi.models.units import DOLLAR, format_price, format_size

if TYPE_CHECKING:
    from kalshi.book import OrderBook

__all__ = [
    "COMBO_LIFECYCLE",
    "DEFAULT_BUFFER",
    "HEARTBEAT_INTERVAL",
    "KNOWN_CHANNELS",
    "LIFECYCLE",
    "MAX_COMMANDS_PER_S",
    "ORDERBOOK",
    "SEQUENCED",
    "UNSCOPED",
    "Feed",
    "Session",
    "Subscription",
    "envelope",
    "ws_frame",
]

HEARTBEAT_INTERVAL: Final = 10.0
MAX_MARKETS_PER_SESSION: Final = 500_000
MAX_COMMANDS_PER_S: Final = 10_000
DEFAULT_BUFFER: Final = 16 * 1024 * 1024  # outbox bytes before error 25
_CHUNK: Final = 256 * 1024
_PING: Final = b"\x89\x09heartbeat"
_EMPTY_PONG: Final = b"\x8a\x00"  # the exchange answers a client ping with an empty pong
_HEAD16: Final = struct.Struct("!BBH").pack  # a frame head with a 16-bit length

ORDERBOOK: Final = "orderbook_delta"
LIFECYCLE: Final = "market_lifecycle_v2"
COMBO_LIFECYCLE: Final = "multivariate_market_lifecycle"
UNSCOPED: Final = frozenset({LIFECYCLE, COMBO_LIFECYCLE})  # market filters ignored (§3.5)
SEQUENCED: Final = frozenset({ORDERBOOK, "trade", LIFECYCLE, COMBO_LIFECYCLE})
# Channels the exchange knows (§2.2). Those without data in our servers are private or
# index feeds: subscribing works, nothing comes.
KNOWN_CHANNELS: Final = frozenset(
    {
        ORDERBOOK,
        "trade",
        "ticker",
        LIFECYCLE,
        COMBO_LIFECYCLE,
        "fill",
        "market_positions",
        "communications",
        "order_group_updates",
        "user_orders",
        "cfbenchmarks_value",
        "cfbenchmarks_value_5hz",
        "pyth_value",
    }
)
_ERRORS: Final = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    25: "Subscription buffer overflow",
    26: "Subscription market limit exceeded",
    27: "Too many requests",
}
_ACTIONS: Final = frozenset({"add_markets", "delete_markets", "get_snapshot"})


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final server frame (RFC 6455 §5.2) of ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def envelope(
    kind: str,
    msg: bytes,
    *,
    sid: int | None = None,
    seq: int | None = None,
    ident: int | None = None,
) -> bytes:
    """A server envelope (§2.1) around an encoded ``msg``: ``type``, then ``id`` (omitted
    when 0 or None), ``sid`` and ``seq`` when given."""
    if seq is not None and sid is not None and not ident:  # a data message: one format
        return b'{"type":"%s","sid":%d,"seq":%d,"msg":%s}' % (kind.encode(), sid, seq, msg)
    head = b'{"type":"%s"' % kind.encode()
    if ident:
        head += b',"id":%d' % ident
    if sid is not None:
        head += b',"sid":%d' % sid
    if seq is not None:
        head += b',"seq":%d' % seq
    return head + b',"msg":' + msg + b"}"


class Subscription:
    """One ``sid`` of one session: a channel, its markets (``None`` = all) and its seq."""

    __slots__ = ("channel", "seq", "session", "sid", "skip_ack", "tickers", "use_yes_price")

    def __init__(
        self,
        session: Session,
        sid: int,
        channel: str,
        tickers: set[str] | None,
        use_yes_price: bool,
        skip_ack: bool = False,
    ) -> None:
        self.session = session
        self.sid = sid
        self.channel = channel
        self.tickers = tickers
        self.seq = 0
        self.use_yes_price = use_yes_price
        self.skip_ack = skip_ack  # skip_ticker_ack: ``ok`` replies omit the market list

    @property
    def sequenced(self) -> bool:
        return self.channel in SEQUENCED

    def carries(self, ticker: str) -> bool:
        """Whether a message about ``ticker`` belongs on this subscription."""
        return self.tickers is None or self.channel in UNSCOPED or ticker in self.tickers

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class Feed:
    """What a :class:`Session` serves: the simulator's engine or a recording. The defaults
    serve no data and inject no fault; a server overrides what it has."""

    buffer_limit: int = DEFAULT_BUFFER  # outbox bytes; a delivery beyond ends its sid (25)
    market_cap: int | None = None  # markets per subscription; more is error 26 (None: no cap)
    command_rate: float = MAX_COMMANDS_PER_S  # commands/s per session (burst the same); 27

    async def run(self, session: Session) -> None:
        """Runs beside ``session`` while it is open (a recording's pass); may return."""

    def lost(self) -> bool:
        """Whether the command just received is lost: no effect, no reply (a fault)."""
        return False

    def bare_subscribed(self) -> bool:
        """Whether a new sid's ``subscribed`` reply takes the older shape, without ``msg``
        (a fault)."""
        return False

    def count(self, fault: str) -> None:
        """A fault took effect (``skip_seq``, ``repeat_seq``: one per frame)."""

    def add(self, sub: Subscription, tickers: list[str] | None) -> None:
        """Start sending ``tickers`` (None: every market) on ``sub``."""

    def remove(self, sub: Subscription, tickers: Iterable[str] | None = None) -> None:
        """Stop sending ``tickers`` (None: everything, the sid is gone) on ``sub``."""

    def subscribed(self, sub: Subscription) -> None:
        """``sub`` is new (its reply, first markets and snapshots are queued)."""

    def overflow(self, sub: Subscription) -> None:
        """``sub`` is ended with error 25 (its reader is too slow)."""

    def book(self, sub: Subscription, ticker: str) -> tuple[str, OrderBook | None] | None:
        """(market id, book: None = empty) for an ``orderbook_snapshot`` of ``ticker`` on
        ``sub`` now, or None to send none (a market this feed does not know)."""
        return None

    def ticker(self, ticker: str) -> bytes | None:
        """The ``msg`` of a ``ticker`` frame for ``send_initial_snapshot``, or None."""
        return None


class _Rate:
    """Token bucket over Trio time (per-session command rate)."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.stamp = capacity, trio.current_time()

    def take(self) -> bool:
        now = trio.current_time()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    """One WebSocket connection after a successful handshake, serving ``feed``;
    ``on_close`` is called once when it ends."""

    def __init__(
        self,
        feed: Feed,
        stream: trio.abc.Stream,
        on_close: Callable[[Session], None] = lambda _: None,
    ) -> None:
        self.feed = feed
        self.stream = stream
        # A socket's descriptor (-1 for another stream): see _send
        sock = getattr(stream, "socket", None)
        self._fd: int = sock.fileno() if isinstance(sock, trio.socket.SocketType) else -1
        self._ws = Connection(ConnectionType.SERVER)
        self._on_close = on_close
        self.subs: dict[int, Subscription] = {}
        self._next_sid = 1
        self._data: deque[bytes] = deque()
        self._data_bytes = 0
        self._control: deque[bytes] = deque()
        self._wake = trio.Event()
        self._writable = trio.Event()
        self._commands = _Rate(feed.command_rate, feed.command_rate)
        self.silent_until = float("-inf")
        self.hold_until = float("-inf")
        self.pending_skip = 0
        self.pending_repeat = 0
        self._closing: str | None = None  # "clean" | "abrupt"
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.markets = 0
        self.frames = 0  # text frames queued by :meth:`_push` (data, replies, a fault's)

    # --- running ----------------------------------------------------------------------------

    async def serve(self, trailing: bytes = b"") -> None:
        """Read commands and write frames until the client leaves or the session is dropped;
        ``trailing``: what the client sent after its handshake."""
        if trailing:
            self._ws.receive_data(trailing)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._writer)
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self.feed.run, self)
                await self._reader()
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away (reset or closed): the session just ends
        finally:
            self._close_subs()
            self._on_close(self)
            await self._close_transport()

    def start_soon(self, task: Callable[[], Awaitable[object]]) -> None:
        """Run ``task`` beside the session until it ends (a feed's sender)."""
        assert self._nursery is not None, "the session is not serving"
        self._nursery.start_soon(task)

    def _close_subs(self) -> None:
        for sub in self.subs.values():
            self.feed.remove(sub)
        self.subs.clear()

    async def _close_transport(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            if self._closing == "abrupt":
                sock = getattr(self.stream, "socket", None)
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.stream.aclose()

    async def _reader(self) -> None:
        parts: list[str] = []
        while True:
            for event in self._ws.events():
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        text, parts = "".join(parts), []
                        self._command(text)
                elif isinstance(event, BytesMessage):
                    if event.message_finished:
                        self._error(0, 1)
                elif isinstance(event, Ping):
                    # kalshi-api.md §2.5: the exchange's pong is empty, whatever the ping
                    # carried (wsproto has queued nothing: pongs are ours to send).
                    self._push_control(_EMPTY_PONG)
                elif isinstance(event, CloseConnection):
                    self._push_control(ws_frame(struct.pack("!H", event.code), 0x8))
                    self._closing = "clean"
                    await self._flush_and_stop()
                    return
            if self._closing is not None:
                await trio.sleep_forever()
            data = await self.stream.receive_some(65536)
            if not data:
                return
            try:
                self._ws.receive_data(bytes(data))
            except RemoteProtocolError:
                return

    async def _flush_and_stop(self) -> None:
        with trio.move_on_after(2):
            while self._control or self._data:
                self._wake.set()
                await trio.sleep(0.01)

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while True:
                now = trio.current_time()
                if now < self.silent_until:
                    await trio.sleep_until(self.silent_until)
                    continue
                out = b"".join(self._control)
                self._control.clear()
                sent_data = 0
                if now >= self.hold_until and len(out) + self._data_bytes <= _CHUNK:
                    # the whole outbox fits a chunk (the usual wake-up): what the loop
                    # below would take, without a step a frame
                    sent_data = self._data_bytes
                    out += b"".join(self._data)
                    self._data.clear()
                elif now >= self.hold_until:
                    parts = []
                    while self._data and len(out) + sent_data < _CHUNK:
                        part = self._data.popleft()
                        parts.append(part)
                        sent_data += len(part)
                    out += b"".join(parts)
                if not out:
                    if self._data:  # held by a delay: control frames may still come
                        with trio.move_on_at(self.hold_until):
                            await self._wake.wait()
                        self._wake = trio.Event()
                        continue
                    break
                await self._send(out)
                self._data_bytes -= sent_data
                if sent_data:
                    self._writable.set()
                    self._writable = trio.Event()
                if self._data:  # a long outbox: the others run between its chunks
                    await trio.lowlevel.checkpoint()
            if self._closing is not None and not self._control and not self._data:
                await self._finish_drop()

    async def _send(self, out: bytes) -> None:
        """Hand ``out`` to the stream. On a socket, one ``write`` first: what the kernel
        takes at once costs no trip through Trio's scheduler (``send_all`` yields after
        every send; at 20 000 msgs/s over 150 connections that was most of the simulator's
        socket time, issue 20), and only the rest waits in ``send_all``. Raises
        BrokenResourceError (or ClosedResourceError) as ``send_all`` does."""
        fd = self._fd
        if fd < 0:
            await self.stream.send_all(out)
            return
        try:
            sent = os.write(fd, out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise trio.ClosedResourceError("the socket was closed") from exc
            raise trio.BrokenResourceError(exc) from exc
        if sent < len(out):
            await self.stream.send_all(memoryview(out)[sent:])

    async def _finish_drop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _heartbeat(self) -> None:
        while True:
            await trio.sleep(HEARTBEAT_INTERVAL)
            if trio.current_time() >= self.silent_until:
                self._push_control(_PING)

    def wake(self) -> None:
        self._wake.set()

    @property
    def outbox_bytes(self) -> int:
        """Data bytes queued and not yet handed to the socket (the buffer error 25 bounds)."""
        return self._data_bytes

    async def wait_flushed(self) -> None:
        """Until the outbox is empty (everything handed to the socket)."""
        while self._data or self._control:
            self._wake.set()
            if self._data:
                await self._writable.wait()
            else:
                await trio.lowlevel.checkpoint()

    def drop(self, *, abrupt: bool, code: int = 1001) -> None:
        """End the session: a close frame with ``code`` (1001 going away by default), or,
        ``abrupt``, a TCP reset without one."""
        if self._closing is not None:
            return
        self._closing = "abrupt" if abrupt else "clean"
        if abrupt:
            self._data.clear()
            self._data_bytes = 0
            self._control.clear()
            if self._scope is not None:
                self._scope.cancel()
        else:
            reason = b"going away" if code == 1001 else b"closed"
            self._push_control(ws_frame(struct.pack("!H", code) + reason, 0x8))

    # --- output -----------------------------------------------------------------------------

    def _push_control(self, frame: bytes) -> None:
        self._control.append(frame)
        self._wake.set()

    def push(self, payload: bytes) -> None:
        """Queue one text frame of ``payload`` as is (no seq consumed: a fault's frame)."""
        self._push(payload)

    def _push(self, payload: bytes) -> None:
        self.frames += 1
        n = len(payload)  # ws_frame's text frame, inlined for the usual sizes
        frame = _HEAD16(0x81, 126, n) + payload if 126 <= n < 65536 else ws_frame(payload)
        self._data.append(frame)
        self._data_bytes += len(frame)
        self._wake.set()

    def push_chunk(self, chunk: bytes) -> None:
        self._data.append(chunk)
        self._data_bytes += len(chunk)
        self._wake.set()

    async def wait_writable(self) -> None:
        """Until the outbox holds less than the feed's ``buffer_limit`` (backpressure for a
        feed that would rather wait than overflow)."""
        while self._data_bytes >= self.feed.buffer_limit:
            await self._writable.wait()

    def _reply(self, kind: str, msg: Any, *, ident: int, sub: Subscription | None = None) -> None:
        body = orjson.dumps(msg)
        if sub is None:
            self._push(envelope(kind, body, ident=ident))
        else:
            self._push(envelope(kind, body, ident=ident, sid=sub.sid, seq=sub.next_seq()))

    def _error(self, ident: int, code: int, sub: Subscription | None = None, **extra: Any) -> None:
        self._reply("error", {"code": code, "msg": _ERRORS[code], **extra}, ident=ident, sub=sub)

    def deliver(
        self,
        sub: Subscription,
        kind: str,
        body: bytes,
        *,
        sequenced: bool | None = None,
        skip: int = 0,
    ) -> None:
        """Send one data message of type ``kind`` (``body``: its encoded ``msg``) on ``sub``:
        with the sid's next ``seq`` when ``sequenced`` (default: the channel is), ``skip``
        seqs left out before it (a gap the source had). An outbox over the feed's
        ``buffer_limit`` ends the sid with error 25 instead (§2.3)."""
        if self._closing is not None:
            return
        if self._data_bytes >= self.feed.buffer_limit:
            self.feed.overflow(sub)
            self._terminate(sub, 25)
            return
        if not (sub.sequenced if sequenced is None else sequenced):
            self._push(envelope(kind, body, sid=sub.sid))
            return
        if skip or self.pending_skip:
            sub.seq += skip
            if self.pending_skip:
                sub.seq += self.pending_skip
                self.pending_skip = 0
                self.feed.count("skip_seq")
        sub.seq = seq = sub.seq + 1
        # envelope()'s data message, inlined
        payload = b'{"type":"%s","sid":%d,"seq":%d,"msg":%s}' % (kind.encode(), sub.sid, seq, body)
        self._push(payload)
        while self.pending_repeat:
            self.pending_repeat -= 1
            self._push(payload)
            self.feed.count("repeat_seq")

    def _terminate(self, sub: Subscription, code: int) -> None:
        """A terminal subscription error (10 or 25): the sid is gone."""
        self.feed.remove(sub)
        self.subs.pop(sub.sid, None)
        self._error(0, code, sub)

    # --- commands ---------------------------------------------------------------------------

    def _command(self, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(0, 1)
            return
        if type(frame) is not dict:
            self._error(0, 1)
            return
        ident = frame.get("id", 0)
        cmd = frame.get("cmd")
        if type(ident) is not int or type(cmd) is not str:
            self._error(ident if type(ident) is int else 0, 1)
            return
        if self.feed.lost():
            return  # no effect, no reply
        if not self._commands.take():
            self._error(ident, 27)
            return
        handler = {
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "update_subscription": self._update,
            "list_subscriptions": self._list,
        }.get(cmd)
        if handler is None:
            self._error(ident, 5)
            return
        params = frame.get("params")
        if cmd == "list_subscriptions":
            self._list(ident, {})
            return
        if type(params) is not dict:
            self._error(ident, 2 if params is None else 1)
            return
        handler(ident, params)

    def _tickers(self, ident: int, params: dict[str, Any]) -> list[str] | bool | None:
        """``market_ticker`` xor ``market_tickers`` -> list, None (absent) or False (error
        already sent)."""
        one, many = params.get("market_ticker"), params.get("market_tickers")
        if one is not None and many is not None:
            self._error(ident, 11)
            return False
        if one is not None:
            if type(one) is not str or not one:
                self._error(ident, 11)
                return False
            return [one]
        if many is None:
            return None
        if type(many) is not list or not all(type(t) is str and t for t in many):
            self._error(ident, 11)
            return False
        return list(dict.fromkeys(many))

    def _subscribe(self, ident: int, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if not channels or type(channels) is not list:
            self._error(ident, 3)
            return
        if not all(type(c) is str and c in KNOWN_CHANNELS for c in channels):
            self._error(ident, 8)
            return
        tickers = self._tickers(ident, params)
        if tickers is False:
            return
        assert tickers is not True
        if ORDERBOOK in channels and not tickers:
            self._error(ident, 14)
            return
        added = len(tickers or ()) * len(channels)
        if self.markets + added > MAX_MARKETS_PER_SESSION or not all(
            self._fits(channel, tickers) for channel in channels
        ):
            self._error(ident, 26)
            return
        use_yes = params.get("use_yes_price") is True
        skip_ack = params.get("skip_ticker_ack") is True
        initial = params.get("send_initial_snapshot") is True
        for channel in dict.fromkeys(channels):
            wanted = None if channel in UNSCOPED else tickers
            existing = next((s for s in self.subs.values() if s.channel == channel), None)
            if existing is not None:
                new = self._add_markets(existing, wanted)
                existing.skip_ack = existing.skip_ack or skip_ack
                self._reply("ok", self._ack(existing), ident=ident, sub=existing)
                self._after_add(existing, new, ident=0, initial=initial)
                continue
            sub = Subscription(self, self._next_sid, channel, None, use_yes, skip_ack)
            self._next_sid += 1
            self.subs[sub.sid] = sub
            if self.feed.bare_subscribed():
                self._push(b'{"type":"subscribed","id":%d}' % ident)  # the older shape
            else:
                self._reply("subscribed", {"channel": channel, "sid": sub.sid}, ident=ident)
            new = self._add_markets(sub, wanted)
            self._after_add(sub, new, ident=0, initial=initial)
            self.feed.subscribed(sub)

    def _fits(self, channel: str, tickers: list[str] | None) -> bool:
        """Whether ``tickers`` fit the per-subscription market cap on ``channel``."""
        cap = self.feed.market_cap
        if cap is None or not tickers or channel in UNSCOPED:
            return True
        sub = next((s for s in self.subs.values() if s.channel == channel), None)
        have = (sub.tickers or set()) if sub is not None else set()
        return len(have | set(tickers)) <= cap

    def _add_markets(self, sub: Subscription, tickers: list[str] | None) -> list[str]:
        if tickers is None:
            if sub.tickers is None:
                self.feed.add(sub, None)
            return []
        if sub.tickers is None:
            sub.tickers = set()
        new = [t for t in tickers if t not in sub.tickers]
        sub.tickers.update(new)
        self.markets += len(new)
        self.feed.add(sub, new)
        return new

    def _after_add(self, sub: Subscription, new: list[str], *, ident: int, initial: bool) -> None:
        if sub.channel == ORDERBOOK:
            for ticker in new:
                self._snapshot(sub, ticker, ident)
        elif sub.channel == "ticker" and initial:
            for ticker in new:
                body = self.feed.ticker(ticker)
                if body is not None:
                    self._push(envelope("ticker", body, sid=sub.sid))

    def _snapshot(self, sub: Subscription, ticker: str, ident: int) -> None:
        found = self.feed.book(sub, ticker)
        if found is None:
            return
        market_id, book = found
        msg: dict[str, Any] = {"market_ticker": ticker, "market_id": market_id}
        if book is not None and book.yes:
            msg["yes_dollars_fp"] = [
                [format_price(p), format_size(s)] for p, s in sorted(book.yes.items())
            ]
        if book is not None and book.no:
            no = sorted(((DOLLAR - p if sub.use_yes_price else p), s) for p, s in book.no.items())
            msg["no_dollars_fp"] = [[format_price(p), format_size(s)] for p, s in no]
        self._push(
            envelope(
                "orderbook_snapshot",
                orjson.dumps(msg),
                ident=ident,
                sid=sub.sid,
                seq=sub.next_seq(),
            )
        )

    def _unsubscribe(self, ident: int, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if not sids or type(sids) is not list:
            self._error(ident, 4)
            return
        for sid in sids:
            sub = self.subs.get(sid) if type(sid) is int else None
            if sub is None:
                self._error(ident, 7)
                continue
            self.feed.remove(sub)
            del self.subs[sub.sid]
            self.markets -= len(sub.tickers or ())
            self._push(
                b'{"id":%d,"sid":%d,"seq":%d,"type":"unsubscribed"}'
                % (ident, sub.sid, sub.next_seq())
            )

    def _update(self, ident: int, params: dict[str, Any]) -> None:
        sid, sids = params.get("sid"), params.get("sids")
        if (sid is None) == (sids is None) or (
            sids is not None and (type(sids) is not list or len(sids) != 1)
        ):
            self._error(ident, 12)
            return
        target = sid if sid is not None else sids[0]  # type: ignore[index]  # checked above
        sub = self.subs.get(target) if type(target) is int else None
        if sub is None:
            self._error(ident, 7)
            return
        action = params.get("action")
        if action is None:
            self._error(ident, 15, sub)
            return
        if action not in _ACTIONS or (action == "get_snapshot" and sub.channel != ORDERBOOK):
            self._error(ident, 13, sub)
            return
        tickers = self._tickers(ident, params)
        if tickers is False:
            return
        if not tickers:
            self._error(ident, 14, sub)
            return
        assert isinstance(tickers, list)
        if action == "get_snapshot":
            for ticker in tickers:
                self._snapshot(sub, ticker, ident)
            return
        if action == "add_markets":
            if self.markets + len(tickers) > MAX_MARKETS_PER_SESSION or not self._fits(
                sub.channel, tickers
            ):
                self._error(ident, 26, sub)
                return
            new = self._add_markets(sub, None if sub.channel in UNSCOPED else tickers)
            self._reply("ok", self._ack(sub), ident=ident, sub=sub)
            self._after_add(sub, new, ident=0, initial=params.get("send_initial_snapshot") is True)
            return
        gone = [t for t in tickers if sub.tickers is not None and t in sub.tickers]
        if sub.tickers is not None:
            sub.tickers.difference_update(gone)
            self.markets -= len(gone)
            self.feed.remove(sub, gone)
        self._reply("ok", self._ack(sub), ident=ident, sub=sub)

    @staticmethod
    def _ack(sub: Subscription) -> dict[str, Any]:
        """An ``ok`` body: the full market list after the update, or nothing when the
        subscription asked for ``skip_ticker_ack`` (kalshi-api.md §2.2)."""
        return {} if sub.skip_ack else {"market_tickers": sorted(sub.tickers or ())}

    def _list(self, ident: int, params: dict[str, Any]) -> None:
        listing = [{"channel": s.channel, "sid": s.sid} for s in self.subs.values()]
        self._reply("ok", listing, ident=ident)
