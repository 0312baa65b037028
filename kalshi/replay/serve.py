"""Re-serve a journal as a Kalshi-compatible WebSocket (``kalshi replay --serve PORT``).

Any client that speaks the exchange's protocol (our gatherer included) connects to
``ws://HOST:PORT/trade-api/ws/v2`` (any auth headers are accepted) and subscribes; each
connection gets its own pass over the recording, starting at its first ``subscribe``, with
the recorded data frames of the channels and markets it subscribed to. What a served
connection sees:

* The exchange's protocol, spoken by the same code as the simulator's
  (:class:`kalshi.http.ws.Session`): every command, reply, error code, ``seq`` rule and
  the 10 s heartbeat of kalshi-api.md §2; the recording is its :class:`~kalshi.http.ws.Feed`.
* Data frames re-numbered for the served subscription: its own ``sid`` and a contiguous
  ``seq`` (channels that had one), the recorded ``msg`` unchanged. A sequence gap in the
  recording (frames the recorder lost) shows as a skipped ``seq``, so the client notices.
* Order books snapshot-first: a market added while the stream runs, and ``get_snapshot``,
  are answered with the book as of the stream's position (rebuilt from the recorded frames
  with :class:`~kalshi.book.OrderBook`); deltas of a market are only sent after a snapshot.
* A capture (``kalshi/replay/source.py``) whose session is ``filtered`` (it kept some
  markets of wider subscriptions) shows no skipped ``seq``: its jumps are other markets'.
* The recording's duplicates are not repeated: an order book follows the recorded session
  that last snapshotted it, and other channels drop a ``msg`` already sent within the last
  10,000 frames (two recorded lifecycle connections carry every event twice).

Pacing: ``speed`` paces by recorded time on Trio's clock; ``None`` sends as fast as the
client reads (the pass waits while the connection's outbox is full, so a slow client gets
no error 25). At the end of the recording the connection stays open and idle.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import trio
from attrs import define

from kalshi.book import OrderBook
from kalshi.errors import BookError
from kalshi.http.server import (
    UNBOUNDED,
    HttpServer,
    Request,
    Response,
    Upgrade,
    WebSocketHandler,
    json_response,
    listen,
)
from kalshi.http.ws import ORDERBOOK, UNSCOPED, Feed, Session, Subscription
from kalshi.journal import JournalProblem, JournalRecord
from kalshi.models.book import BookDelta, BookSnapshot
from kalshi.models.frames import Message
from kalshi.replay.core import TYPE_CHANNEL, ReplayFilter
from kalshi.wire import WS_PATH, decode_ws

__all__ = ["SERVER_NAME", "WS_PATH", "serve_recording", "serve_stream"]

SERVER_NAME = "replay --serve"  # names the server in a bind error

log = logging.getLogger("kalshi.replay.serve")

Source = Callable[[], Iterable[JournalRecord | JournalProblem]]

_RECENT = 10_000
_READ_BATCH = 200  # records read (and decompressed) between checkpoints


@define
class _Frame:
    """A recorded data frame, classified."""

    channel: str
    type: str
    ticker: str
    envelope: dict[str, Any]
    gap: bool  # the recorded subscription skipped seq numbers before this frame


class _Cursor:
    """One pass over the recording: classification, dedup and the books at this point."""

    def __init__(self) -> None:
        self.books: dict[str, OrderBook] = {}
        self.market_ids: dict[str, str] = {}
        self._book_source: dict[str, tuple[str, int]] = {}
        self._channels: dict[tuple[str, int, int], str] = {}
        self._last_seq: dict[tuple[str, int, int], int] = {}
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._filtered: set[tuple[str, int]] = set()

    def connect(self, record: JournalRecord) -> None:
        """A recorded session starts; a filtered capture's skipped seq is no gap. A
        capture's session read on from its next file (``continues``, docs/replay.md,
        "Identity of a capture's rows") keeps its books, channels and seq under the new
        connection."""
        session = (record.gatherer_id, record.conn_id)
        if record.detail.get("seq_check") == "filtered":
            self._filtered.add(session)
        before = record.detail.get("continues")
        if not isinstance(before, int):
            return
        old = (record.gatherer_id, before)
        for ticker, source in self._book_source.items():
            if source == old:
                self._book_source[ticker] = session
        for key in [key for key in self._channels if key[:2] == old]:
            self._channels[(*session, key[2])] = self._channels.pop(key)
        for key in [key for key in self._last_seq if key[:2] == old]:
            self._last_seq[(*session, key[2])] = self._last_seq.pop(key)

    def classify(self, record: JournalRecord) -> _Frame | None:
        """The frame to serve, or None (control reply, duplicate, undecodable)."""
        try:
            envelope = orjson.loads(record.raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(envelope, dict):
            return None
        kind = envelope.get("type")
        msg = envelope.get("msg")
        sid = envelope.get("sid")
        session = (record.gatherer_id, record.conn_id)
        if kind == "subscribed" and isinstance(msg, dict):
            if isinstance(msg.get("sid"), int):
                self._channels[(*session, msg["sid"])] = str(msg.get("channel"))
            return None
        if not isinstance(kind, str) or kind not in TYPE_CHANNEL or not isinstance(msg, dict):
            return None
        key = (*session, sid) if isinstance(sid, int) else None
        channel = self._channels.get(key, TYPE_CHANNEL[kind]) if key else TYPE_CHANNEL[kind]
        gap = False
        seq = envelope.get("seq")
        if key is not None and isinstance(seq, int):
            last = self._last_seq.get(key)
            if last is not None and seq <= last:
                return None  # a repeat the recorder received
            gap = last is not None and seq != last + 1 and session not in self._filtered
            self._last_seq[key] = seq
        ticker = str(msg.get("market_ticker") or msg.get("event_ticker") or "")
        if channel == ORDERBOOK:
            if not self._book(kind, ticker, session, record.raw):
                return None
        elif not self._fresh(kind, msg):
            return None
        return _Frame(channel, kind, ticker, envelope, gap)

    def _book(self, kind: str, ticker: str, session: tuple[str, int], raw: bytes) -> bool:
        if kind == "orderbook_snapshot":
            self._book_source[ticker] = session
        elif self._book_source.get(ticker) != session:
            return False  # another recorded session's copy of this market
        decoded = decode_ws(raw)
        if not isinstance(decoded, Message):
            return False
        body = decoded.body
        if isinstance(body, BookSnapshot):
            self.market_ids[ticker] = body.market_id
            try:
                self.books[ticker] = OrderBook.from_snapshot(body)
            except BookError:
                self.books.pop(ticker, None)
        elif isinstance(body, BookDelta) and ticker in self.books:
            try:
                self.books[ticker].apply_delta(body)
            except BookError:
                self.books.pop(ticker, None)  # unknown until the next recorded snapshot
        return True

    def _fresh(self, kind: str, msg: dict[str, Any]) -> bool:
        key = kind.encode() + orjson.dumps(msg, option=orjson.OPT_SORT_KEYS)
        if key in self._recent:
            return False
        self._recent[key] = None
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return True


class _Recording(Feed):
    """One client's pass over the recording, starting at its first ``subscribe``."""

    def __init__(self, source: Source, flt: ReplayFilter, speed: float | None) -> None:
        self.source = source
        self.filter = flt
        self.speed = speed
        self.cursor = _Cursor()
        self.started = trio.Event()
        self._primed: dict[Subscription, set[str]] = {}  # order book: markets snapshotted

    # --- the protocol's questions ---------------------------------------------------------

    def subscribed(self, sub: Subscription) -> None:
        self.started.set()

    def remove(self, sub: Subscription, tickers: Iterable[str] | None = None) -> None:
        if tickers is None:
            self._primed.pop(sub, None)
        else:
            self._primed.get(sub, set()).difference_update(tickers)

    def book(self, sub: Subscription, ticker: str) -> tuple[str, OrderBook | None] | None:
        book = self.cursor.books.get(ticker)
        if book is None:
            return None  # not known at this point of the recording: its snapshot comes later
        self._primed.setdefault(sub, set()).add(ticker)
        return self.cursor.market_ids.get(ticker, ""), book

    # --- the pass -------------------------------------------------------------------------

    async def run(self, session: Session) -> None:
        await self.started.wait()
        items: Iterator[Any] = iter(self.source())
        flt = self.filter
        clock_start: float | None = None
        wall_start = 0
        # Read here, a batch between checkpoints, not in a worker thread: the session's
        # 10 s heartbeat is a deadline, and on a test's autojump clock every wait for a
        # thread would jump to it, shifting the paced frames by whole heartbeats.
        while batch := list(itertools.islice(items, _READ_BATCH)):
            for record in batch:
                if not isinstance(record, JournalRecord):
                    continue
                if record.kind == "connect":
                    self.cursor.connect(record)
                if record.kind != "frame" or record.direction != "in":
                    continue
                wall = record.wall_us
                if flt.end_us is not None and wall > flt.end_us:
                    continue
                sending = flt.start_us is None or wall >= flt.start_us
                if sending and self.speed is not None:
                    if clock_start is None:
                        clock_start, wall_start = trio.current_time(), wall
                    await trio.sleep_until(clock_start + (wall - wall_start) / 1e6 / self.speed)
                if sending:
                    await session.wait_writable()
                # no checkpoint from here: a frame's book update and its send are one step
                frame = self.cursor.classify(record)
                if frame is not None and sending and self._wanted(frame):
                    self._send(session, frame)
            await trio.lowlevel.checkpoint()

    def _wanted(self, frame: _Frame) -> bool:
        flt = self.filter
        if flt.channels and frame.channel not in flt.channels:
            return False
        return not (
            flt.tickers and frame.channel not in UNSCOPED and frame.ticker not in flt.tickers
        )

    def _send(self, session: Session, frame: _Frame) -> None:
        body: bytes | None = None
        for sub in list(session.subs.values()):
            if sub.channel != frame.channel or not sub.carries(frame.ticker):
                continue
            if frame.channel == ORDERBOOK:
                primed = self._primed.setdefault(sub, set())
                if frame.type == "orderbook_snapshot":
                    primed.add(frame.ticker)
                elif frame.ticker not in primed:
                    continue
            if body is None:
                body = orjson.dumps(frame.envelope["msg"])
            session.deliver(
                sub,
                frame.type,
                body,
                sequenced="seq" in frame.envelope,
                skip=1 if frame.gap else 0,
            )


def _handler(source: Source, flt: ReplayFilter, speed: float | None) -> WebSocketHandler:
    async def upgrade(request: Request, upgrade: Upgrade) -> Response | None:
        if request.path != WS_PATH:
            return json_response(404, {"error": f"not found: use {WS_PATH}"})
        trailing = await upgrade.accept()
        if trailing is None:
            return None
        log.info("client connected from %s", request.peer)
        await Session(_Recording(source, flt, speed), upgrade.stream).serve(trailing)
        log.info("client %s went away", request.peer)
        return None

    return upgrade


async def serve_recording(
    source: Source,
    port: int,
    flt: ReplayFilter | None = None,
    speed: float | None = None,
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``source()`` (called once per client connection, e.g. ``lambda:
    read_journal(paths)``) on ``ws://host:port/trade-api/ws/v2`` until cancelled.

    ``task_status.started(port)`` gives the bound port (useful with ``port=0``). Other
    paths are refused with 404. Raises ``OSError`` if the port cannot be bound, naming
    :data:`SERVER_NAME`, the host and the port (:func:`~kalshi.http.server.listen`).
    """
    server = HttpServer(
        {}, websocket=_handler(source, flt or ReplayFilter(), speed), limits=UNBOUNDED
    )
    listeners = await listen(host, port, SERVER_NAME)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.serve_connection, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


async def serve_stream(
    stream: trio.abc.Stream,
    source: Source,
    flt: ReplayFilter | None = None,
    speed: float | None = None,
) -> None:
    """Serve one client over an already open ``stream`` (e.g. one end of
    ``trio.testing.memory_stream_pair()``); returns when the client leaves."""
    server = HttpServer(
        {}, websocket=_handler(source, flt or ReplayFilter(), speed), limits=UNBOUNDED
    )
    await server.serve_connection(stream)
