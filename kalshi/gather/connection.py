"""One WebSocket connection task: connect (signed), subscribe, relay, reconnect.

Per frame, in this order: stamp the receive time, journal the raw bytes, decode and check
``seq`` (the :class:`~kalshi.pipeline.FrameProcessor`), hand rows to the writers.
A session ends on any network error, on silence (no frame and no pong for
``websocket.silence_timeout``), or on a terminal subscription error; the task then backs off
exponentially with jitter and starts a new session with its current markets, except after a
permanent close code (:attr:`ConnectionLost.permanent`): then the connection stops, its
state ``stopped`` and the error on ``/health``. Every session the journal opened with a
``connect`` marker ends in it with a ``disconnect`` marker and its reason, a clean stop
too (``gatherer stopping``: cancelled by SIGINT, SIGTERM, ``--duration``), journaled
before the journal's final flush (:meth:`~kalshi.journal.JournalWriter.held`); only a
killed process leaves a session without one (docs/journal.md). The window
between the last frame of one session and the subscription of the next is a ``reconnect``
gap; for the trade channel it is backfilled over REST.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext

import orjson
import trio

from kalshi.errors import AuthError, ConfigError, ConnectionLost, HttpError, NetError
from kalshi.gather import metrics
from kalshi.gather.commands import EPISODE_MAX_S, InFlight, Refusals, Sent
from kalshi.gather.context import RESTART_MARGIN_US, GatherContext
from kalshi.gather.frame_metrics import FrameMetrics
from kalshi.gather.problems import BookProblems
from kalshi.gather.read_ahead import ReadAheadBudget
from kalshi.models.control import Command, ErrorReply, OkReply, Subscribed, SubscriptionList
from kalshi.models.frames import Message
from kalshi.models.paths import WS_PATH
from kalshi.models.rows import GapRow
from kalshi.net import Backoff, WsConnection
from kalshi.net.clock import clock_hint
from kalshi.net.clock import mono_us as trio_mono_us
from kalshi.pipeline import CONTROL_TYPES, Outcome
from kalshi.wire import encode_command, subscribe_cmd, update_subscription_cmd

__all__ = ["SCOPED_CHANNELS", "Connection"]

log = logging.getLogger("kalshi.gather.connection")

SCOPED_CHANNELS = frozenset({"orderbook_delta", "ticker", "trade"})
_TERMINAL_ERRORS = frozenset({10, 25})  # channel error, subscription buffer overflow
_MARKET_LIMIT, _TOO_MANY = 26, 27
BAD_FRAMES_LOGGED = (
    10  # a gatherer's refused frames logged one by one; the rest counted  # kalshi-api.md §2.3
)
_STALL = 1.0  # seconds the keepalive woke late: our own loop stalled, not the peer silent
_RECHECK = 0.1  # seconds: past a deadline (silence, a reply), one more poll before the verdict
_UNKNOWN_SID = 7  # our sid is gone: only a new session (a new subscription) helps
_TIMED_TABLES = frozenset({"orderbook_deltas", "trades", "tickers"})
_Frame = tuple[int, int, float, bytes | str]  # frame_no, wall µs, Trio time, raw
_DRAIN_SECONDS = 10.0  # a session's end: at most this long handling frames read ahead
_READ_AHEAD_BYTES = 1 << 22  # a read-ahead socket read: up to 4 MiB (what the kernel holds)
_TURN_BYTES = 1 << 18  # read-ahead frames handled per turn of the loop (256 KiB, one read)


class _Resubscribe(ConnectionLost):
    """A terminal subscription error: start a new session."""


class Connection:
    """``channel`` for ``markets`` (``scoped``) or for every market (``scoped=False``)."""

    def __init__(self, ctx: GatherContext, name: str, channel: str, *, scoped: bool) -> None:
        self.ctx = ctx
        self.name = name
        self.channel = channel
        self.scoped = scoped
        self.desired: set[str] = set()
        self.state = "idle"
        metrics.CONNECTIONS.labels("idle").inc()
        metrics.RECONNECTS.labels(name)  # the series exists at 0 before the first reconnect
        self.sessions = 0
        self.reconnects = 0
        self.messages = 0
        self.bytes = 0
        self.last_message_at: float | None = None  # trio time
        self.last_error = ""
        self._signed_at_us = 0  # the wall clock the last handshake was signed with
        self.conn_id = 0
        self._journaled_open = False  # conn_id's connect marker is not ended by a disconnect
        self.sid: int | None = None
        # Set before run(): this process started after an earlier run of the gatherer that
        # was complete on this channel until then (µs); the first session records the
        # outage and (trade channel) backfills it.
        self.resume_from: int | None = None
        self.paused = False  # not reading its socket: the journal's memory is full
        # Not reading its socket either: a writer's queue is full (the database is behind)
        # and the frame's rows (or what handling it writes) wait for room. Backpressure of
        # our own, not silence.
        self.blocked = False
        self.read_ahead = 0  # frames read, not yet processed (whole-exchange connections)
        self._stream_us = 0  # exchange time (µs) of the newest timed row read
        self._lag_us = 0  # how late (µs) that row was read: receive minus exchange time
        self._outage = False
        # Markets the exchange confirmed on this session's subscription (scoped only).
        self.subscribed: set[str] = set()
        # Markets refused (error 26 with no other connection to take them, or another
        # refusal): code by ticker; retried every ``refusal_retry``; /health is degraded.
        self.refused: dict[str, int] = {}
        self.full = False  # the subscription took no more markets (error 26 for one)
        # Set by the layout: hand markets this connection cannot carry to another one;
        # returns those nobody could take.
        self.on_refused: Callable[[Connection, list[str]], list[str]] | None = None
        self._requested: set[str] = set()  # sent (in flight or confirmed)
        self._retrying: set[str] = set()  # refused markets to ask for again
        self._snapshots: set[str] = set()
        # why each market was last resnapshotted (kalshi_resnapshots_total's reason)
        self._reasons: dict[str, str] = {}
        self._inflight = InFlight()
        self._retry_at = -math.inf  # no add/subscribe before (error 27's pause)
        self._refused_until = math.inf
        self._refusals: Refusals | None = None  # the refusal episode under way
        self._chunk = 1
        self._ws: WsConnection | None = None
        self._pause = Backoff(1.0, 30.0)
        self._wake = trio.Event()
        self._next_id = 0
        self._frame_no = 0  # the last frame read
        self._handled_no = 0  # the last frame handled (journaled): what a command follows
        self._last_frame_wall = 0
        self._alive = 0.0
        self._metrics = FrameMetrics(channel)
        # book problems: one WARNING line a period (count, first tickers), each at DEBUG
        self._problems = BookProblems(name)
        rate = float(ctx.cfg.websocket.commands_per_second)
        self._command_interval = 1.0 / rate if rate > 0 else 0.0
        self._next_command_at = -math.inf

    def _set_state(self, state: str) -> None:
        """Move to ``state``; the ``kalshi_ws_connections`` gauge follows every move."""
        metrics.CONNECTIONS.labels(self.state).dec()
        metrics.CONNECTIONS.labels(state).inc()
        self.state = state

    # --- what the registry and the pipeline ask for -------------------------------------

    def add(self, tickers: list[str]) -> None:
        self.desired.update(tickers)
        self._wake.set()

    def remove(self, tickers: list[str]) -> None:
        self.desired.difference_update(tickers)
        self._snapshots.difference_update(tickers)
        for ticker in tickers:
            self._reasons.pop(ticker, None)
            self.refused.pop(ticker, None)
            self._retrying.discard(ticker)
        self._wake.set()

    def resnapshot(self, tickers: list[str], reason: str = "gap") -> None:
        """Ask the exchange for fresh snapshots of ``tickers`` (those this connection
        carries); ``reason``: ``kalshi_resnapshots_total``'s label when they are asked for
        (``gap``: the pipeline's, ``rest_mismatch``: the snapshot poller's)."""
        for ticker in tickers:
            if ticker in self.desired:
                self._snapshots.add(ticker)
                self._reasons[ticker] = reason
        self._wake.set()

    # --- the task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Sessions until cancelled; never returns. The journal's close waits (at most
        ``shutdown_grace``) until this task has ended, so the last frames it reads ahead
        and its session's ``disconnect`` marker are in the journal's file."""
        journal = self.ctx.journal
        with journal.held() if journal is not None else nullcontext():
            await self._sessions()

    def _disconnected(self, reason: str) -> None:
        """Journal the ``disconnect`` marker (``reason``) of the session the journal holds
        open, once; not into a journal already closed (its close waited ``shutdown_grace``
        for this task, in vain)."""
        journal = self.ctx.journal
        if not self._journaled_open or (journal is not None and journal.closed):
            return
        self._journaled_open = False
        self.ctx.marker(self.conn_id, "disconnect", reason=reason)

    async def _sessions(self) -> None:
        ws_cfg = self.ctx.cfg.websocket
        backoff = Backoff(float(ws_cfg.reconnect_backoff), float(ws_cfg.max_reconnect_backoff))
        lost_at = self.resume_from
        self._outage = lost_at is not None
        if lost_at is not None and self.channel == "trade":  # (the gatherer registered it)
            await self.ctx.backfill_due(
                ("disconnect", self.name, lost_at),
                lost_at - RESTART_MARGIN_US,
                0,
                f"{self.name}: trades while the gatherer was down",
            )
        while True:
            permanent = False
            try:
                await self._session(lost_at, backoff)
            except BaseException as exc:
                error = _network_error(exc)
                if error is None:
                    rest = _without_network_errors(exc)
                    if rest is exc:
                        raise
                    raise rest from None  # cancelled while a network error came in
                self.last_error = reason = str(error)
                if isinstance(error, HttpError) and error.status == 404 and not self.sessions:
                    # No such endpoint: the URL is wrong, and retrying cannot mend it
                    raise ConfigError(
                        f"kalshi.ws_url: {self.ctx.cfg.kalshi.ws_url}: websocket handshake"
                        f" answered HTTP 404 (the WebSocket path is {WS_PATH})"
                    ) from None
                if isinstance(error, AuthError):
                    hint = clock_hint(error.server_date, error.body, self._signed_at_us)
                    self.last_error = reason = reason + hint
                permanent = isinstance(error, ConnectionLost) and error.permanent
                if not permanent:
                    level = logging.ERROR if isinstance(error, AuthError) else logging.WARNING
                    log.log(level, "%s: %s", self.name, reason)
            if self.sessions and self.conn_id:
                self.ctx.processor.forget_connection(self.conn_id)
                self._disconnected(reason)
                if lost_at is None or self._last_frame_wall:
                    # What we missed starts where our reading had got to, not when we read
                    # the last frame: reading a backlog 60 s behind, the session's end (an
                    # error 25 at the back of the queue) is 60 s of trades after it.
                    lost_at = self._last_frame_wall - max(0, self._lag_us)
                    if not self._last_frame_wall:
                        lost_at = self.ctx.wall_us()
                if self.channel == "trade" and not permanent:  # from lost_at on: REST, later
                    await self.ctx.backfill_due(
                        ("disconnect", self.name, lost_at),
                        lost_at,
                        self.conn_id,
                        f"{self.name}: trades after the lost session's last frame",
                    )
            self._last_frame_wall = self._lag_us = 0
            if permanent:  # retrying cannot help: stop, degraded on /health
                self.last_error = f"stopped after a permanent close: {reason}"
                log.error("%s: %s; not reconnecting", self.name, self.last_error)
                self._set_state("stopped")
                ctx = self.ctx
                since = lost_at if lost_at is not None else ctx.wall_us()
                await ctx.gap(  # an open gap: nothing on this connection from here on
                    GapRow(
                        start_ts=since,
                        end_ts=None,
                        gatherer_id=ctx.gatherer_id,
                        conn_id=self.conn_id,
                        sid=self.sid,
                        ticker=None,
                        kind="stopped",
                        expected_seq=None,
                        got_seq=None,
                        detail=f"{self.name}: {self.last_error}",
                    )
                )
                await trio.sleep_forever()
            self.reconnects += 1
            metrics.RECONNECTS.labels(self.name).inc()
            if self.ctx.on_connection_lost is not None:
                self.ctx.on_connection_lost()
            self._set_state("backoff")
            await trio.sleep(backoff.next())

    async def _session(self, lost_at: int | None, backoff: Backoff) -> None:
        ctx = self.ctx
        ws_cfg = ctx.cfg.websocket
        url = ctx.cfg.kalshi.ws_url
        self._set_state("connecting")
        self._signed_at_us = ctx.wall_us()
        headers = ctx.signer.headers("GET", url, self._signed_at_us // 1000)
        async with ctx.connector(url, headers, int(ws_cfg.max_frame_bytes)) as ws:
            self.conn_id = ctx.new_conn_id()
            self.sessions += 1
            self._frame_no = self._handled_no = 0
            self.sid = None
            self.subscribed = set()
            self.full = False
            self._requested = set()
            self._snapshots = set()
            self._reasons = {}
            self._inflight = InFlight()
            self._chunk = max(1, ws_cfg.markets_per_command)
            self._alive = trio.current_time()
            ctx.marker(self.conn_id, "connect", label=self.name, channels=[self.channel], url=url)
            self._journaled_open = True
            self._set_state("subscribing")
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._keepalive, ws)
                    nursery.start_soon(self._commands, ws, lost_at, backoff)
                    await self._receive(ws)
            except BaseException as exc:
                if _network_error(exc) is None:  # not a lost session (run's): a stop
                    # after the frames read ahead are journaled (_drain), before the
                    # socket's close handshake (up to 1 s)
                    self._disconnected(_stop_reason(exc))
                raise

    # --- receiving ----------------------------------------------------------------------

    async def _receive(self, ws: WsConnection) -> None:
        """Read, journal and process frames until the session ends. A scoped connection
        does it all in one loop, and so does a whole-exchange one when
        ``websocket.read_ahead`` is 0. Above 0 a whole-exchange one (``scoped=False``:
        ``ticker``, say, ~30 % of all messages and ~40 % of the bytes on one socket) reads
        in a task of its own that takes what the kernel holds each turn of the event loop,
        stamps the frames and buffers up to that many of them; the handling takes them in
        turns of 256 KiB. So when the gatherer is short of CPU (a burst), the backlog of
        that one subscription waits in our memory, not in the exchange's buffer for it
        (16 MB at the simulator, about 6 s of the ticker at 20 000 msgs/s; the exchange's
        is unpublished), which would overflow (error 25, terminal, kalshi-api.md §2.3).
        Only a full read-ahead stops the reading (``blocked``); the journal's memory
        bound (``journal.max_buffer``) stops the handling, which journals, not the
        reading (docs/journal.md). Frames read before the
        session ended are processed before it is reported. A frame is journaled when it is
        handled, so the journal holds the frames whose rows went to the writers (restart
        recovery and ``kalshi replay`` rebuild the same rows); a frame read ahead when the
        process dies is lost with it, as one in the socket would be, inside the restart's
        ``outage`` gap (its trades backfilled over REST)."""
        counts = self._metrics = FrameMetrics(self.channel)
        counts.flush(trio.current_time())
        self.blocked = False
        self.read_ahead = 0
        try:
            budget = self.ctx.read_ahead
            if self.scoped or budget is None:
                await self._one_loop(ws, counts)
            else:
                await self._read_ahead(ws, counts, budget)
        finally:
            counts.flush()
            self._problems.flush(trio.current_time(), force=True)

    async def _read(self, ws: WsConnection, *, journal_room: bool = True) -> _Frame:
        """The next frame, stamped (wall µs, Trio time). ``journal_room``: wait first while
        the journal's memory is full (the one loop, which journals what it reads at once);
        a read-ahead's reader does not: its frames are journaled when handled, and the
        handling waits for the journal (:meth:`_read_ahead`)."""
        ctx = self.ctx
        journal = ctx.journal
        if journal_room and journal is not None and journal.pressure:
            # The journal's memory is full (its disk lags): stop reading this socket
            # until it drains, so TCP pushes back instead of memory growing.
            self.paused = True
            try:
                await journal.room()
            finally:
                self.paused = False
                self._alive = trio.current_time()
        return self._stamp(await ws.receive())

    def _stamp(self, raw: bytes | str) -> _Frame:
        """Number and stamp a frame just taken from the socket (wall µs, Trio time)."""
        now = trio.current_time()
        self._frame_no = frame_no = self._frame_no + 1
        self._alive = self.last_message_at = now
        self.messages += 1
        self.bytes += len(raw)
        return frame_no, self.ctx.wall_us(), now, raw

    async def _one_loop(self, ws: WsConnection, counts: FrameMetrics) -> None:
        """Read and process frames in this one task until the session ends. The frames
        one socket read brought are taken as they are (``ws.ready``) and handled without
        a coroutine (:meth:`_take`); this task awaits only the socket, the journal's room
        (checked before each frame, as :meth:`_read` does), a writer's room and what a
        frame asks for beyond its rows (:meth:`_finish`)."""
        journal = self.ctx.journal
        ready, stamp, take = ws.ready, self._stamp, self._take
        while True:
            raw = None if journal is not None and journal.pressure else ready()
            frame = await self._read(ws) if raw is None else stamp(raw)
            rest = take(frame, counts, True)
            if rest is not None:
                await self._finish(rest[0], rest[1], frame, True)

    async def _read_ahead(
        self, ws: WsConnection, counts: FrameMetrics, budget: ReadAheadBudget
    ) -> None:
        """Read in a task of its own into a buffer bounded by ``budget`` (the
        ``websocket.read_ahead_bytes`` every whole-exchange connection of the gatherer
        shares); process them here. ``blocked`` only while that budget is spent.

        The reader takes up to :data:`_READ_AHEAD_BYTES` from the socket per turn of the
        event loop (what the kernel holds: 1-2 MB on loopback at a burst), so the
        exchange's buffer for the subscription drains each turn, not 256 KiB of it. The
        handling takes what is buffered without a scheduling point per frame (it yields
        every :data:`_TURN_BYTES`, as the one loop does per socket read): through a Trio
        channel each frame cost a turn of the whole loop, ~150 tasks, so at full scale the
        handling fell to a few frames a second and looked stopped (docs/scaling.md)."""
        ws.read_bytes = _READ_AHEAD_BYTES
        frames: deque[_Frame] = deque()
        arrived = trio.lowlevel.ParkingLot()
        ended: list[NetError] = []
        reading = True
        cost = budget.cost

        def holding() -> bool:
            return bool(frames)

        async def read() -> None:
            nonlocal reading
            try:
                while True:
                    frame = await self._read(ws, journal_room=False)
                    frames.append(frame)
                    budget.take(cost(frame[3]))
                    self.read_ahead += 1
                    if arrived:
                        arrived.unpark_all()
                    if budget.full:
                        self.blocked = True
                        try:
                            await budget.room(holding)
                        finally:
                            self.blocked = False
            except NetError as exc:  # reported once what was read is processed
                ended.append(exc)
            finally:
                reading = False
                arrived.unpark_all()

        journal = self.ctx.journal
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            try:
                turn = 0
                while True:
                    while frames:
                        if journal is not None and journal.pressure:
                            # The journal's disk lags: wait here, where the frame would be
                            # journaled, not in the reader, which goes on filling the
                            # read-ahead (bounded) so the exchange's buffer does not fill.
                            await journal.room()
                            turn = 0
                            continue  # the session may have ended meanwhile: frames kept
                        frame = frames.popleft()
                        self.read_ahead -= 1
                        budget.give(cost(frame[3]))
                        await self._process(frame, counts, direct=False)
                        turn += len(frame[3])
                        if turn >= _TURN_BYTES:
                            turn = 0
                            await trio.lowlevel.checkpoint()
                    if not reading:
                        break
                    turn = 0
                    await arrived.park()
            finally:
                await self._drain(frames, counts, budget)
        if ended:
            raise ended[0]

    async def _drain(
        self, frames: deque[_Frame], counts: FrameMetrics, budget: ReadAheadBudget
    ) -> None:
        """Handle the frames read ahead when the session ends otherwise (cancelled: the
        gatherer stopping; a reply or error that ended it), as the one loop of a scoped
        connection would have read no further, within ``_DRAIN_SECONDS`` (shielded).
        Frames left then are dropped with the session (inside its gap) and their bytes go
        back to ``budget``."""
        cost = budget.cost
        try:
            with trio.move_on_after(_DRAIN_SECONDS, shield=True):
                while frames:
                    frame = frames.popleft()
                    self.read_ahead -= 1
                    budget.give(cost(frame[3]))
                    try:
                        await self._process(frame, counts, direct=False)
                    except NetError:  # a terminal error among them: the session is over
                        return
        finally:
            for frame in frames:
                budget.give(cost(frame[3]))
            self.read_ahead -= len(frames)
            frames.clear()

    async def _process(self, frame: _Frame, counts: FrameMetrics, *, direct: bool) -> None:
        """Decode one frame, hand its rows to the writers and act on what it asks for.
        ``direct``: read by this same task, so waiting for room here is not reading
        (``blocked``, which the keepalive does not take for silence)."""
        rest = self._take(frame, counts, direct)
        if rest is not None:
            await self._finish(rest[0], rest[1], frame, direct)

    def _take(
        self, frame: _Frame, counts: FrameMetrics, direct: bool
    ) -> tuple[Outcome, int] | None:
        """What handling a frame does without waiting: journal it, decode it, count it,
        hand its rows to writers with room. ``None`` when that was all; else the outcome
        and how many of its rows were handed, for :meth:`_finish`."""
        ctx = self.ctx
        frame_no, wall, now, raw = frame
        self._handled_no = frame_no
        journal = ctx.journal
        if journal is not None:  # when handled: the journal holds what the database gets
            mono = int(now * 1_000_000) if ctx.mono_us is trio_mono_us else ctx.mono_us()
            journal.record_frame(self.conn_id, frame_no, "in", wall, mono, raw)
        self._last_frame_wall = wall
        out = ctx.processor.process(self.conn_id, frame_no, wall, raw)
        message = out.message
        counts.frame(message.type if message is not None else out.problem or "unknown", len(raw))
        rows = out.rows
        handed = 0
        if rows:
            table, row = rows[-1]
            if table in _TIMED_TABLES and row[0] is not None:  # the exchange's µs
                self._stream_us = ts = int(row[0])
                # how far behind the exchange this row is handled (read, or read ahead)
                self._lag_us = lag = (wall if direct else ctx.wall_us()) - ts
                counts.latency(max(0, lag) / 1e6)
                ctx.skew.observe(wall, ts)
            handed = ctx.sink.put_ready(rows)
        if now >= counts.due:
            counts.flush(now)
            self._problems.flush(now)
        if (  # rows a writer had no room for; a problem, a request, a reply to act on
            handed < len(rows)
            or message is None
            or out.problem is not None
            or out.resnapshot
            or out.gap
            or out.lifecycle is not None
            or message.type in CONTROL_TYPES
        ):
            return out, handed
        return None

    async def _finish(self, out: Outcome, handed: int, frame: _Frame, direct: bool) -> None:
        """The rest of :meth:`_take`'s frame: its rows a writer had no room for (waiting,
        in order: backpressure reaches the socket), then what it asks for."""
        rows = out.rows
        if handed < len(rows):
            if direct:  # seen by the keepalive while put_all waits
                self.blocked = True
                await self.ctx.sink.put_all(rows[handed:])
                self.blocked = False
            else:  # a read-ahead's reader reads on; ``blocked`` is its own
                await self.ctx.sink.put_all(rows[handed:])
        message = out.message
        if (
            message is None
            or out.problem is not None
            or out.resnapshot
            or out.gap
            or out.lifecycle is not None
            or message.type in CONTROL_TYPES
        ):
            frame_no, wall, _, raw = frame
            if direct:  # e.g. a lifecycle's markets row waits for room
                self.blocked = True
                await self._handle(out, wall, frame_no, raw)
                self.blocked = False
            else:
                await self._handle(out, wall, frame_no, raw)

    def _bad_frame(self, out: Outcome, frame_no: int, raw: bytes | str) -> None:
        """A frame refused (invalid, unknown type): counted; the gatherer's first
        ``BAD_FRAMES_LOGGED`` each logged with where (connection, journal conn and
        frame number, the frame's sid and seq when it has them), the field and why."""
        ctx = self.ctx
        metrics.DECODE_ERRORS.labels(out.problem).inc()
        ctx.bad_frames_logged += 1
        if ctx.bad_frames_logged > BAD_FRAMES_LOGGED:
            log.debug("%s: frame %d: %s: %s", self.name, frame_no, out.problem, out.detail)
            return
        where = f"{self.name} (conn {self.conn_id}) frame {frame_no}"
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            frame = None
        if isinstance(frame, dict):
            where += "".join(f" {k} {frame[k]}" for k in ("sid", "seq") if k in frame)
        last = ctx.bad_frames_logged == BAD_FRAMES_LOGGED
        more = "; further refused frames are counted only (kalshi_decode_errors_total)"
        log.warning("%s: %s: %s%s", where, out.problem, out.detail, more if last else "")

    async def _handle(self, out: Outcome, wall: int, frame_no: int, raw: bytes | str) -> None:
        ctx = self.ctx
        if out.problem in ("invalid", "unknown_type"):
            self._bad_frame(out, frame_no, raw)
        elif out.problem == "duplicate":
            metrics.DECODE_ERRORS.labels("duplicate").inc()
        elif out.problem in ("book", "book_invalid"):
            self._problems.note(out.problem, _ticker(out), out.detail)
        elif out.problem == "crossed":
            metrics.CROSSED_BOOK_FRAMES.inc()
            if out.rows and out.rows[-1][0] == "gaps":  # a cross begins
                self._problems.note(out.problem, _ticker(out), out.detail)
        ctx.count_gaps(out.rows)  # seq_gap and book_invalid rows come from the pipeline
        if out.resnapshot:
            self.resnapshot(out.resnapshot)
        if out.backfill_from is not None and ctx.backfill is not None:
            key = ("seq-gap", self.conn_id, frame_no)
            detail = f"{self.name}: trades of a seq gap (frame {frame_no})"
            await ctx.backfill_due(key, out.backfill_from, self.conn_id, detail)
            ctx.backfill.send_nowait((out.backfill_from, wall, key))
        if out.lifecycle is not None and ctx.on_lifecycle is not None:
            await ctx.on_lifecycle(out)
        message = out.message
        if message is None:
            return
        sent = self._inflight.answer(message)
        if sent is not None:
            await self._answered(sent, message)
            return
        body = message.body
        if isinstance(body, Subscribed) and body.channel == self.channel and body.sid:
            self.sid = body.sid  # a reply to no command of ours (not expected)
            self._wake.set()
        elif isinstance(body, ErrorReply):
            log.warning("%s: exchange error %d %s", self.name, body.code, body.message)
            if body.code in _TERMINAL_ERRORS:
                raise _Resubscribe(f"terminal subscription error {body.code}: {body.message}")

    async def _answered(self, sent: Sent, message: Message) -> None:
        """Act on the exchange's reply to one of our commands (matched by id)."""
        body = message.body
        self._wake.set()
        if isinstance(body, ErrorReply):
            if body.code in _TERMINAL_ERRORS or body.code == _UNKNOWN_SID:
                raise _Resubscribe(f"subscription error {body.code}: {body.message}")
            await self._refused(sent, body)
            return
        metrics.COMMAND_REPLIES.labels(sent.action, "ok").inc()
        if sent.action == "subscribe":
            sid = body.sid if isinstance(body, Subscribed) else message.sid
            if sid is None:  # the older reply shape names no sid: ask for the list
                await self._command(
                    Command(self._ident(), "list_subscriptions"), "list_subscriptions", ()
                )
            else:
                self.sid = sid
            await self._confirm(sent.tickers)
        elif sent.action == "list_subscriptions" and isinstance(body, SubscriptionList):
            sids = [s.sid for s in body.subscriptions if s.channel == self.channel]
            if not sids:
                raise ConnectionLost(f"subscribed, but list_subscriptions has no {self.channel}")
            self.sid = sids[0]
        elif sent.action == "add_markets" and isinstance(body, OkReply):
            await self._confirm(sent.tickers)
        elif sent.action == "delete_markets":
            self.subscribed.difference_update(sent.tickers)

    async def _confirm(self, tickers: tuple[str, ...]) -> None:
        confirmed = [t for t in tickers if t in self._requested]
        self.subscribed.update(confirmed)
        for ticker in tickers:
            self.refused.pop(ticker, None)
        await self.ctx.subscribed(self.channel, confirmed)  # their refusal gaps end

    async def _refused(self, sent: Sent, error: ErrorReply) -> None:
        """A command refused: 27 pauses and resends; 26 halves the batch, and once a single
        market is refused moves the markets to another connection; anything else (or no
        connection with room) is a ``subscription_refused`` gap per market, retried every
        ``websocket.refusal_retry``."""
        code = error.code
        metrics.COMMAND_REPLIES.labels(sent.action, str(code)).inc()
        now = trio.current_time()
        if self._refusals is None:
            self._refusals = Refusals(now)
        self._refusals.commands[f"{sent.action} {code} {error.message}"] += 1
        self._refusals.markets += len(sent.tickers)
        log.debug(  # the episode is summed up in one line (_end_refusals)
            "%s: %s of %d market(s) refused: %d %s",
            self.name,
            sent.action,
            len(sent.tickers),
            code,
            error.message,
        )
        tickers = list(sent.tickers)
        if sent.action == "delete_markets":  # still ours: the next sync sends it again
            self._requested.update(t for t in tickers if t not in self.desired)
            self._retry_at = now + self._pause.next()
            return
        if sent.action == "get_snapshot":
            self._snapshots.update(t for t in tickers if t in self.desired)
            self._retry_at = now + self._pause.next()
            return
        if sent.action == "list_subscriptions":
            raise ConnectionLost(f"list_subscriptions refused: {code} {error.message}")
        self._requested.difference_update(tickers)  # not on the subscription
        again = [t for t in tickers if t in self.refused]  # a retry, asked for once more
        if code == _TOO_MANY:
            self._retrying.update(again)
            self._retry_at = now + self._pause.next()
            return
        if sent.action == "subscribe" and not tickers:  # a whole-exchange channel refused
            self.last_error = f"subscribe refused: {code} {error.message}"
            self._retry_at = now + float(self.ctx.cfg.websocket.refusal_retry)
            return
        if code == _MARKET_LIMIT and len(tickers) > 1 and not self.full:
            self._retrying.update(again)
            self._chunk = max(1, len(tickers) // 2)  # find the cap: smaller batches
            return
        if code == _MARKET_LIMIT:
            self.full = True
        await self._give_up(tickers, code, error.message)

    async def _give_up(self, tickers: list[str], code: int, why: str) -> None:
        """Markets this subscription cannot take: to another connection if the layout
        has room, else refused (a gap row each, retried later)."""
        asked = len(tickers)
        if code == _MARKET_LIMIT and self.on_refused is not None:
            tickers = self.on_refused(self, tickers)
        if self._refusals is None:  # given up without asking (the subscription is full)
            self._refusals = Refusals(trio.current_time())
        self._refusals.moved += asked - len(tickers)
        self._refusals.gaps += len(tickers)
        if not tickers:
            return
        ctx = self.ctx
        wall = ctx.wall_us()
        for ticker in tickers:
            self.refused[ticker] = code
            await ctx.refused(  # one open gap per market, whichever connection it asked
                self.channel,
                GapRow(
                    start_ts=wall,
                    end_ts=None,
                    gatherer_id=ctx.gatherer_id,
                    conn_id=self.conn_id,
                    sid=self.sid,
                    ticker=ticker,
                    kind="subscription_refused",
                    expected_seq=None,
                    got_seq=None,
                    detail=f"{self.name}: {self.channel} refused: {code} {why}",
                ),
            )
        retry = float(ctx.cfg.websocket.refusal_retry)
        self._refused_until = min(self._refused_until, trio.current_time() + retry)

    # --- sending ------------------------------------------------------------------------

    async def _send(self, ws: WsConnection, data: bytes) -> None:
        ctx = self.ctx
        if ctx.journal is not None:
            ctx.journal.record_frame(
                self.conn_id, self._handled_no, "out", ctx.wall_us(), ctx.mono_us(), data
            )
        ctx.processor.sent(data, self.conn_id)
        await ws.send(data)

    def _ident(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _command(self, command: Command, action: str, tickers: tuple[str, ...]) -> None:
        """Send one command, at most ``websocket.commands_per_second`` of them (the exchange
        allows 10 000/s per session, kalshi-api.md §2.6; pacing spreads the snapshots a
        resubscription brings so no reply burst overflows the exchange's buffer, error 25);
        its reply is matched by id (:class:`InFlight`)."""
        assert self._ws is not None
        await self._pace()
        now = trio.current_time()
        self._next_command_at = now + self._command_interval
        self._inflight.add(Sent(command.id, action, tickers, now, self.ctx.wall_us()))
        await self._send(self._ws, encode_command(command))

    async def _pace(self) -> None:
        """Until the next command may go (``websocket.commands_per_second``)."""
        if self._next_command_at > trio.current_time():
            await trio.sleep_until(self._next_command_at)

    async def _commands(self, ws: WsConnection, lost_at: int | None, backoff: Backoff) -> None:
        """Subscribe, then keep the server's market list equal to ``desired``; every
        command's reply is acted on (:meth:`_answered`)."""
        ctx = self.ctx
        self._ws = ws
        self._pause = Backoff(
            float(ctx.cfg.websocket.reconnect_backoff),
            float(ctx.cfg.websocket.max_reconnect_backoff),
        )
        sent = await self._subscribe()
        while self.sid is None or not sent:
            self._end_refusals(trio.current_time())
            sent = await self._subscribe() or sent
        self._set_state("live")
        backoff.reset()
        if lost_at is not None:
            await self._reconnect_gap(lost_at)
        while True:
            self._wake = trio.Event()
            now = trio.current_time()
            if now >= self._refused_until:
                self._retry_refused()
            if now >= self._retry_at:
                if self.scoped:
                    await self._sync_markets()
                if self._snapshots:
                    await self._request_snapshots()
            self._end_refusals(now)
            wake_at = self._refused_until
            if self._refusals is not None:
                wake_at = min(wake_at, self._refusals.began + EPISODE_MAX_S)
            if now < self._retry_at:
                wake_at = min(wake_at, self._retry_at)
            with trio.move_on_at(wake_at):
                await self._wake.wait()

    def _end_refusals(self, now: float) -> None:
        """Sum up the refusal episode in one warning once the subscription has settled
        (nothing unanswered, nothing left to ask for, no pause running), or every
        ``EPISODE_MAX_S`` while it does not."""
        episode = self._refusals
        if episode is None:
            return
        settled = (
            self.sid is not None
            and not self._inflight.timed()
            and now >= self._retry_at
            and not (self.scoped and self.desired - self._requested - self._held())
        )
        if settled or now >= episode.began + EPISODE_MAX_S:
            self._refusals = None
            log.warning(episode.summary(self.name, now, len(self.subscribed), len(self.refused)))

    def _held(self) -> set[str]:
        """Refused markets not due to be asked for again yet."""
        return self.refused.keys() - self._retrying

    def _retry_refused(self) -> None:
        """``refusal_retry`` is up: ask for the refused markets again. They stay refused
        (and ``/health`` degraded) until the exchange takes them."""
        self._refused_until = math.inf
        self.full = False
        self._retrying = set(self.refused)

    async def _subscribe(self) -> bool:
        """Send the subscribe command (after any pause) and wait for its answer; returns
        whether it sent one."""
        self._wake = trio.Event()
        if trio.current_time() < self._retry_at:
            with trio.move_on_at(self._retry_at):
                await self._wake.wait()
            return False
        if self._inflight.pending("subscribe") or self._inflight.pending("list_subscriptions"):
            await self._wake.wait()
            return False
        if self.scoped:
            candidates = sorted(self.desired - self._held())
            if not candidates:  # the exchange refuses an order-book sub without markets
                self._set_state("idle")
                with trio.move_on_at(self._refused_until):
                    await self._wake.wait()
                if trio.current_time() >= self._refused_until:
                    self._retry_refused()
                return False
            self._set_state("subscribing")
            first = tuple(candidates[: self._chunk])
            self._requested.update(first)
            self._retrying.difference_update(first)
            command = subscribe_cmd(self._ident(), [self.channel], first, skip_ticker_ack=True)
        else:  # the whole exchange (kalshi-api.md §2.2, §5)
            first = ()
            command = subscribe_cmd(self._ident(), [self.channel], skip_ticker_ack=True)
        self.ctx.marker(self.conn_id, "subscribe", channels=[self.channel], markets=len(first))
        await self._command(command, "subscribe", first)
        if self.sid is None:
            await self._wake.wait()
        return True

    async def _sync_markets(self) -> None:
        assert self.sid is not None
        drop = sorted(self._requested - self.desired)
        add = sorted(self.desired - self._requested - self._held())
        if add and self.full:  # this subscription takes no more: elsewhere, or refused
            self._retrying.difference_update(add)
            await self._give_up(add, _MARKET_LIMIT, "Subscription market limit exceeded")
            add = sorted(self.desired - self._requested - self._held())
        for action, tickers in (("delete_markets", drop), ("add_markets", add)):
            chunk = self._chunk if action == "add_markets" else len(tickers) or 1
            chunk = min(chunk, max(1, self.ctx.cfg.websocket.markets_per_command))
            for i in range(0, len(tickers), chunk):
                await self._pace()  # replies that came meanwhile are acted on first
                if trio.current_time() < self._retry_at:
                    return  # a refusal asked for a pause
                if action == "add_markets" and self.full:
                    return  # the next pass hands the rest to other connections
                wanted = action == "add_markets"  # still so, after replies meanwhile
                part = tuple(
                    t
                    for t in tickers[i : i + chunk]
                    if (t in self.desired) == wanted and (t in self._requested) != wanted
                )
                if not part:
                    continue
                if action == "add_markets":
                    self._requested.update(part)
                    self._retrying.difference_update(part)
                else:
                    self._requested.difference_update(part)
                command = update_subscription_cmd(self._ident(), self.sid, action, part)
                await self._command(command, action, part)

    async def _request_snapshots(self) -> None:
        assert self.sid is not None
        ctx = self.ctx
        chunk = max(1, ctx.cfg.websocket.markets_per_command)
        wanted = sorted(self._snapshots & self._requested)
        self._snapshots.clear()
        for i in range(0, len(wanted), chunk):
            part = tuple(wanted[i : i + chunk])
            ctx.resnapshots += len(part)
            for ticker in part:
                metrics.RESNAPSHOTS.labels(self._reasons.get(ticker, "gap")).inc()
            ctx.marker(self.conn_id, "resnapshot", tickers=list(part))
            command = update_subscription_cmd(self._ident(), self.sid, "get_snapshot", part)
            await self._command(command, "get_snapshot", part)

    async def _reconnect_gap(self, lost_at: int) -> None:
        """One gap row from ``lost_at`` to now: ``reconnect`` after a lost session,
        ``outage`` for the first session after the gatherer itself was down."""
        ctx = self.ctx
        now = ctx.wall_us()
        outage, self._outage = self._outage, False
        await ctx.gap(
            GapRow(
                start_ts=lost_at,
                end_ts=now,
                gatherer_id=ctx.gatherer_id,
                conn_id=self.conn_id,
                sid=self.sid,
                ticker=None,
                kind="outage" if outage else "reconnect",
                expected_seq=None,
                got_seq=None,
                detail=f"{self.name}: gatherer down since its last {self.channel} frame"
                if outage
                else f"{self.name}: {self.last_error or 'disconnected'}",
            )
        )
        if self.channel == "trade" and ctx.backfill is not None:
            key = ("disconnect", self.name, lost_at)
            since = ctx.backfill_start(key, lost_at - RESTART_MARGIN_US if outage else lost_at)
            ctx.backfill.send_nowait((since, now, key))

    # --- liveness -----------------------------------------------------------------------

    async def _keepalive(self, ws: WsConnection) -> None:
        """Ping every ``ping_interval`` (one ping in flight at a time); raise when nothing
        at all (a data frame, a ping, a pong with any payload) arrived for
        ``silence_timeout``. The exchange's pongs are empty (kalshi-api.md §2.5), so
        liveness is whatever the socket last heard, not a matched payload. Past either
        deadline (silence, a command's reply) the verdict waits ``_RECHECK`` (one more
        poll): on a starved machine the poll that wakes this task also finds the bytes
        that arrived meanwhile, and the task that reads them may run after this one (the
        scale test's quiet lifecycle connections were declared silent with their pongs
        unread in the socket)."""
        ws_cfg = self.ctx.cfg.websocket
        interval = float(ws_cfg.ping_interval)
        timeout = float(ws_cfg.silence_timeout)
        in_flight = False

        async def ping() -> None:
            nonlocal in_flight
            try:
                await ws.ping()
            finally:
                in_flight = False

        command_timeout = float(ws_cfg.command_timeout)
        async with trio.open_nursery() as pings:
            next_ping = wake = trio.current_time()
            rechecked = False  # past the deadline once, and gave the reader a poll
            while True:
                if trio.current_time() - wake > _STALL:
                    # This process was stalled (CPU starved, a long GC): frames may be waiting
                    # unread in the socket. Silence counts again from now, not from before.
                    self._alive = max(self._alive, trio.current_time())
                deadline = max(self._alive, ws.heard) + timeout
                if self.paused or self.blocked:  # not reading on purpose: not silence
                    self._alive = max(self._alive, trio.current_time())
                    deadline = max(deadline, trio.current_time() + timeout)
                overdue_at, oldest = self._inflight.deadline(command_timeout)
                now = trio.current_time()
                if oldest is not None and now >= overdue_at and not self._reply_due(oldest):
                    overdue_at = now + _STALL  # we are behind: look again in a while
                lost = now >= deadline or (oldest is not None and now >= overdue_at)
                if not lost:
                    rechecked = False
                elif not rechecked:
                    # Judge on what reached the socket by now, not on what our loop got
                    # round to reading: after a stretch without CPU the poll that wakes
                    # us finds the peer's bytes too (a pong, a reply), but the task that
                    # reads them runs in the same batch (in random order) or later. One
                    # more poll, and what is there is heard.
                    rechecked = True
                    await trio.sleep(_RECHECK)
                    continue
                if now >= deadline:
                    raise ConnectionLost(f"silent for {timeout:g}s (no frame, no ping, no pong)")
                if oldest is not None and now >= overdue_at:
                    metrics.COMMAND_REPLIES.labels(oldest.action, "timeout").inc()
                    raise ConnectionLost(
                        f"no reply to {oldest.action} (id {oldest.ident}) "
                        f"within {command_timeout:g}s"
                    )
                if now >= self._metrics.due:  # a quiet connection's counts, one interval late
                    self._metrics.flush(now)
                    self._problems.flush(now)
                if interval > 0 and now >= next_ping:
                    if not in_flight:
                        in_flight = True
                        pings.start_soon(ping)
                    next_ping = now + interval
                wake = min(deadline, overdue_at, next_ping if interval > 0 else math.inf)
                changed = self._inflight.changed
                with trio.move_on_at(wake):
                    await changed.wait()

    def _reply_due(self, sent: Sent) -> bool:
        """Whether ``sent``'s reply could have arrived by now. The exchange answers in order
        with the data it sends (kalshi-api.md §2.1), so not while we do not read (our
        writers' queues are full, the journal's memory is full) nor while we are behind:
        the newest row handled was late (over ``_STALL`` after its exchange time) and is
        not yet ``command_timeout`` past the command in the exchange's time, so the frames
        after it, the reply among them, still wait in the socket, however long ago that
        row was read (a starved loop reads a busy socket once every few seconds, and a
        busy exchange handles a command seconds after it came: issue 20, order-book
        connections 35 s behind read data 6 s newer than a ``delete_markets`` before its
        reply). Either way the reply is late because we are, and waiting is right; a lost
        command on a connection that keeps up (its rows handled in time), or one the
        exchange's stream has gone ``command_timeout`` past, still times out."""
        if self.paused or self.blocked:
            return False
        timeout_us = float(self.ctx.cfg.websocket.command_timeout) * 1e6
        behind = self._lag_us > _STALL * 1e6 and self._stream_us < sent.wall_us + timeout_us
        return not behind


def _network_error(exc: BaseException) -> NetError | AuthError | None:
    """The network error that ended a session, when every failure in ``exc`` (a single
    exception or a group: the receive loop and a ping both see the socket die) is one;
    None otherwise, so bugs and cancellation propagate untouched."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        else:
            leaves.append(item)
    errors = [leaf for leaf in leaves if isinstance(leaf, NetError | AuthError)]
    return errors[0] if errors and len(errors) == len(leaves) else None


def _stop_reason(exc: BaseException) -> str:
    """The ``disconnect`` reason of a session ended by no network error: ``gatherer
    stopping`` when ``exc`` holds only cancellation (and network errors racing it), else
    the first other error (a bug, which stops the gatherer too)."""
    pending: list[BaseException] = [exc]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        elif not isinstance(item, trio.Cancelled | NetError | AuthError):
            return f"gatherer stopping: {type(item).__name__}: {item}"
    return "gatherer stopping"


def _without_network_errors(exc: BaseException) -> BaseException:
    """``exc`` without the network errors in it, when it is a group that also holds other
    exceptions (a shutdown's ``Cancelled`` racing an error 25 reply, say): the others
    propagate and the network error, moot once we are stopping, does not escape."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    rest = exc.subgroup(lambda e: not isinstance(e, BaseExceptionGroup | NetError | AuthError))
    return exc if rest is None else rest


def _ticker(out: Outcome) -> str:
    """The market of a book problem's frame (a delta's or a snapshot's)."""
    body = out.message.body if out.message is not None else None
    return str(getattr(body, "ticker", "?"))
