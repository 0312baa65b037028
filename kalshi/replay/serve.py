"""Re-serve a journal as a Kalshi-compatible WebSocket (``kalshi replay --serve PORT``).

Any client that speaks the exchange's protocol (our gatherer included) connects to
``ws://HOST:PORT/trade-api/ws/v2`` (any auth headers are accepted) and subscribes; each
connection gets its own pass over the recording, starting at its first ``subscribe``, with
the recorded data frames of the channels and markets it subscribed to. What a served
connection sees:

* Replies as the exchange sends them: ``subscribed`` (one ``sid`` per channel), ``ok``
  (``update_subscription`` with the full market list, ``list_subscriptions``),
  ``unsubscribed``, ``error`` (codes 5, 7, 8, 12, 13, 14).
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
client reads. At the end of the recording the connection stays open and idle.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import trio
import trio_websocket
from attrs import define, field

from kalshi.book import OrderBook
from kalshi.errors import BookError
from kalshi.journal import JournalProblem, JournalRecord
from kalshi.models.book import BookDelta, BookSnapshot, Side
from kalshi.models.frames import Message
from kalshi.models.units import format_price, format_size
from kalshi.replay.core import TYPE_CHANNEL, ReplayFilter
from kalshi.wire import WS_PATH, decode_ws

__all__ = ["WS_PATH", "serve_recording", "serve_stream"]

log = logging.getLogger("kalshi.replay.serve")

Source = Callable[[], Iterable[JournalRecord | JournalProblem]]

_CHANNELS = frozenset(TYPE_CHANNEL.values())
_UNSCOPED = frozenset({"market_lifecycle_v2", "multivariate_market_lifecycle"})
_BOOK = "orderbook_delta"
_RECENT = 10_000
_READ_BATCH = 1000


@define
class _Frame:
    """A recorded data frame, classified."""

    channel: str
    type: str
    ticker: str
    envelope: dict[str, Any]
    gap: bool  # the recorded subscription skipped seq numbers before this frame


@define
class _Sub:
    sid: int
    channel: str
    tickers: set[str] | None  # None: every market
    seq: int = 0
    primed: set[str] = field(factory=set)  # order book: markets that got their snapshot

    def carries(self, ticker: str) -> bool:
        return self.tickers is None or ticker in self.tickers

    def next_seq(self, skip: int = 0) -> int:
        self.seq += 1 + skip
        return self.seq


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
        """A recorded session starts; a filtered capture's skipped seq is no gap."""
        if record.detail.get("seq_check") == "filtered":
            self._filtered.add((record.gatherer_id, record.conn_id))

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
        if channel == _BOOK:
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

    def snapshot_frame(self, sub: _Sub, ticker: str, ident: int | None = None) -> bytes | None:
        book = self.books.get(ticker)
        if book is None:
            return None
        msg: dict[str, Any] = {
            "market_ticker": ticker,
            "market_id": self.market_ids.get(ticker, ""),
        }
        for key, side in (("yes_dollars_fp", Side.YES), ("no_dollars_fp", Side.NO)):
            levels = book.levels(side)
            if levels:
                msg[key] = [[format_price(p), format_size(s)] for p, s in levels]
        envelope: dict[str, Any] = {
            "type": "orderbook_snapshot",
            "sid": sub.sid,
            "seq": sub.next_seq(),
            "msg": msg,
        }
        if ident is not None:
            envelope["id"] = ident
        sub.primed.add(ticker)
        return orjson.dumps(envelope)


class _Session:
    """One client connection: commands in, the recording out."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        source: Source,
        flt: ReplayFilter,
        speed: float | None,
    ) -> None:
        self.ws = ws
        self.peer = str(ws.remote)
        self.source = source
        self.filter = flt
        self.speed = speed
        self.subs: dict[int, _Sub] = {}
        self.cursor = _Cursor()
        self.lock = trio.Lock()  # a frame's book update and its send are one step
        self.started = trio.Event()
        self._sids = itertools.count(1)

    async def run(self) -> None:
        """Until the client goes away (its close ends the session quietly)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._commands)
                await self.started.wait()
                await self._stream()
                await trio.sleep_forever()
        except* trio_websocket.ConnectionClosed:
            log.info("client %s went away", self.peer)

    # --- the recording --------------------------------------------------------------

    async def _stream(self) -> None:
        items: Iterator[Any] = iter(self.source())
        flt = self.filter
        clock_start: float | None = None
        wall_start = 0
        while batch := await trio.to_thread.run_sync(
            lambda: list(itertools.islice(items, _READ_BATCH))
        ):
            for record in batch:
                if not isinstance(record, JournalRecord):
                    continue
                if record.kind == "connect":
                    self.cursor.connect(record)
                if record.kind != "frame":
                    continue
                if record.direction != "in":
                    continue
                wall = record.wall_us
                if flt.end_us is not None and wall > flt.end_us:
                    continue
                sending = flt.start_us is None or wall >= flt.start_us
                if sending and self.speed is not None:
                    if clock_start is None:
                        clock_start, wall_start = trio.current_time(), wall
                    await trio.sleep_until(clock_start + (wall - wall_start) / 1e6 / self.speed)
                async with self.lock:
                    frame = self.cursor.classify(record)
                    if frame is not None and sending and self._wanted(frame):
                        await self._send_frame(frame)
            await trio.lowlevel.checkpoint()

    def _wanted(self, frame: _Frame) -> bool:
        flt = self.filter
        if flt.channels and frame.channel not in flt.channels:
            return False
        return not (
            flt.tickers and frame.channel not in _UNSCOPED and frame.ticker not in flt.tickers
        )

    async def _send_frame(self, frame: _Frame) -> None:
        for sub in list(self.subs.values()):
            if sub.channel != frame.channel:
                continue
            if frame.channel not in _UNSCOPED and not sub.carries(frame.ticker):
                continue
            if frame.channel == _BOOK:
                if frame.type == "orderbook_snapshot":
                    sub.primed.add(frame.ticker)
                elif frame.ticker not in sub.primed:
                    continue
            envelope = dict(frame.envelope)
            envelope.pop("id", None)
            envelope["sid"] = sub.sid
            if "seq" in envelope:
                envelope["seq"] = sub.next_seq(1 if frame.gap else 0)
            await self.ws.send_message(orjson.dumps(envelope).decode())

    # --- commands -----------------------------------------------------------------------

    async def _commands(self) -> None:
        while True:
            text = await self.ws.get_message()
            try:
                command = orjson.loads(text)
            except orjson.JSONDecodeError:
                command = None
            if not isinstance(command, dict):
                await self._error(None, 1, "Unable to process message")
                continue
            async with self.lock:
                await self._command(command)

    async def _reply(self, envelope: dict[str, Any]) -> None:
        await self.ws.send_message(orjson.dumps(envelope).decode())

    async def _error(self, ident: Any, code: int, text: str) -> None:
        envelope: dict[str, Any] = {"type": "error", "msg": {"code": code, "msg": text}}
        if ident:
            envelope["id"] = ident
        await self._reply(envelope)

    async def _command(self, command: dict[str, Any]) -> None:
        ident = command.get("id")
        params = command.get("params") or {}
        name = command.get("cmd")
        if not isinstance(params, dict):
            await self._error(ident, 1, "Unable to process message")
        elif name == "subscribe":
            await self._subscribe(ident, params)
        elif name == "update_subscription":
            await self._update(ident, params)
        elif name == "unsubscribe":
            for sid in params.get("sids") or []:
                sub = self.subs.pop(sid, None) if isinstance(sid, int) else None
                if sub is None:
                    await self._error(ident, 7, "Unknown subscription ID")
                    continue
                await self._reply(
                    {"id": ident, "sid": sid, "seq": sub.next_seq(), "type": "unsubscribed"}
                )
        elif name == "list_subscriptions":
            listed = [{"channel": s.channel, "sid": s.sid} for s in self.subs.values()]
            await self._reply({"id": ident, "type": "ok", "msg": listed})
        else:
            await self._error(ident, 5, "Unknown command")

    async def _subscribe(self, ident: Any, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            await self._error(ident, 3, "Channels required")
            return
        tickers = _tickers(params)
        for channel in channels:
            if channel not in _CHANNELS:
                await self._error(ident, 8, "Unknown channel name")
                continue
            if channel == _BOOK and not tickers:
                await self._error(ident, 14, "Market Ticker required")
                continue
            sub = next((s for s in self.subs.values() if s.channel == channel), None)
            if sub is None:
                sub = _Sub(next(self._sids), channel, None)
                if tickers and channel not in _UNSCOPED:
                    sub.tickers = set()
                self.subs[sub.sid] = sub
            await self._reply(
                {"id": ident, "type": "subscribed", "msg": {"channel": channel, "sid": sub.sid}}
            )
            if sub.tickers is not None and tickers:
                await self._add(sub, tickers, None)
        self.started.set()

    async def _add(self, sub: _Sub, tickers: list[str], ident: int | None) -> None:
        assert sub.tickers is not None
        for ticker in tickers:
            if ticker in sub.tickers:
                continue
            sub.tickers.add(ticker)
            if sub.channel == _BOOK:
                frame = self.cursor.snapshot_frame(sub, ticker, ident)
                if frame is not None:
                    await self.ws.send_message(frame.decode())

    async def _update(self, ident: Any, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if "sid" in params and sids is None:
            sids = [params["sid"]]
        if not isinstance(sids, list) or len(sids) != 1:
            await self._error(ident, 12, "Exactly one subscription ID is required")
            return
        sub = self.subs.get(sids[0])
        if sub is None:
            await self._error(ident, 7, "Unknown subscription ID")
            return
        action = params.get("action")
        tickers = _tickers(params)
        if action == "get_snapshot":
            if sub.channel != _BOOK:
                await self._error(ident, 13, "Unsupported action")
                return
            for ticker in tickers:
                frame = self.cursor.snapshot_frame(sub, ticker, ident)
                if frame is not None:
                    await self.ws.send_message(frame.decode())
            return
        if action not in ("add_markets", "delete_markets") or sub.tickers is None:
            await self._error(ident, 13, "Unsupported action")
            return
        if action == "add_markets":
            ok_seq = sub.next_seq()
            await self._reply(_ok(ident, sub, ok_seq, tickers))
            await self._add(sub, tickers, None)
            return
        sub.tickers.difference_update(tickers)
        sub.primed.difference_update(tickers)
        await self._reply(_ok(ident, sub, sub.next_seq(), []))


def _ok(ident: Any, sub: _Sub, seq: int, adding: list[str]) -> dict[str, Any]:
    listed = sorted((sub.tickers or set()) | set(adding))
    return {
        "id": ident,
        "sid": sub.sid,
        "seq": seq,
        "type": "ok",
        "msg": {"market_tickers": listed},
    }


def _tickers(params: dict[str, Any]) -> list[str]:
    many = params.get("market_tickers")
    if isinstance(many, list):
        return [t for t in many if isinstance(t, str)]
    one = params.get("market_ticker")
    return [one] if isinstance(one, str) else []


async def _handle(
    request: trio_websocket.WebSocketRequest, source: Source, flt: ReplayFilter, speed: float | None
) -> None:
    if request.path.split("?", 1)[0] != WS_PATH:
        await request.reject(404, body=b"not found: use " + WS_PATH.encode())
        return
    session = _Session(await request.accept(), source, flt, speed)
    log.info("client connected from %s", session.peer)
    await session.run()


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
    paths are refused with 404. Raises ``OSError`` if the port cannot be bound.
    """
    chosen = flt or ReplayFilter()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await _handle(request, source, chosen, speed)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, host, port, None)
        task_status.started(server.port)


async def serve_stream(
    stream: trio.abc.Stream,
    source: Source,
    flt: ReplayFilter | None = None,
    speed: float | None = None,
) -> None:
    """Serve one client over an already open ``stream`` (e.g. one end of
    ``trio.testing.memory_stream_pair()``); returns when the client leaves."""
    async with trio.open_nursery() as nursery:
        request = await trio_websocket.wrap_server_stream(nursery, stream)
        await _handle(request, source, flt or ReplayFilter(), speed)
        nursery.cancel_scope.cancel()
