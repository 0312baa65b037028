"""Fault injection: at run time (``sim.faults``) or on a schedule (:class:`FaultPlan`).

Every fault is counted in ``truth.faults_injected`` once per *observable occurrence*:
one per connection dropped, silenced, delayed or refused, one per seq gap or repeated frame,
one per malformed frame sent, one per REST answer turned into a 429 or 5xx. A fault aimed
at no connection (nobody connected) therefore counts nothing.

Plan grammar (``kalshi sim --faults SPEC``)::

    SPEC   := ENTRY ("," ENTRY)*
    ENTRY  := KIND "=" WHEN
    WHEN   := "every:" DUR [":" ARG]        repeat every DUR, first at DUR
            | "at:" DUR [":" ARG]           once, DUR after start
    DUR    := NUMBER ("ms" | "s" | "m")     e.g. 500ms, 5s, 1.5m
    KIND   := drop | drop_abrupt | close | silent | delay | skip_seq | repeat_seq
            | malformed | malformed_json | malformed_truncated | malformed_unknown_type
            | malformed_wrong_type | rest429 | rest5xx | refuse | stuck_cursor
            | unanswered | bare_subscribed | cross_book

``ARG`` is a duration for silent, delay, rest429, rest5xx, refuse, stuck_cursor, unanswered
and bare_subscribed (default 3s) and a
count for skip_seq and repeat_seq (default 1). ``close`` closes every connection with the
close code ARG (default 1008, a permanent one: RFC 6455 §7.4). ``malformed`` cycles through
the four kinds.
Example: ``drop=every:5s,silent=at:10s:3s,skip_seq=every:7s,malformed=every:3s,rest429=at:20s:5s``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import trio
from attrs import frozen

from kalshi.errors import ConfigError

if TYPE_CHECKING:
    from kalshi.sim.broker import SimSession as Session

__all__ = ["MALFORMED_KINDS", "FaultPlan", "FaultStep", "Faults"]

MALFORMED_KINDS: Final = ("json", "truncated", "unknown_type", "wrong_type")
_TIMED: Final = frozenset(
    {
        "silent",
        "delay",
        "rest429",
        "rest5xx",
        "refuse",
        "stuck_cursor",
        "unanswered",
        "bare_subscribed",
    }
)
_COUNTED: Final = frozenset({"skip_seq", "repeat_seq", "close"})
_KINDS: Final = frozenset(
    {
        "drop",
        "drop_abrupt",
        "malformed",
        "cross_book",
        *(f"malformed_{k}" for k in MALFORMED_KINDS),
    }
    | _TIMED
    | _COUNTED
)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


class Faults:
    """Runtime fault injection on every open connection (and on REST)."""

    def __init__(self, counter: Counter[str], sessions: Callable[[], list[Session]]) -> None:
        self._counter = counter
        self._sessions = sessions
        self.rest_429_until = float("-inf")
        self.rest_5xx_until = float("-inf")
        self.refuse_until = float("-inf")
        self.stuck_cursor_until = float("-inf")
        self.unanswered_until = float("-inf")
        self.bare_subscribed_until = float("-inf")
        self._malformed_next = 0

    def count(self, kind: str, n: int = 1) -> None:
        if n:
            self._counter[kind] += n

    def drop_connections(self, *, abrupt: bool = False, code: int = 1001) -> int:
        """Close every WebSocket: with a close frame (``code``, 1001 going away by default;
        a permanent code such as 1008 or 4xxx tells the client not to come back) or,
        ``abrupt``, with a TCP reset and no close frame. Returns how many were dropped."""
        sessions = self._sessions()
        for session in sessions:
            session.drop(abrupt=abrupt, code=code)
        kind = "drop_abrupt" if abrupt else "drop" if code == 1001 else "close"
        self.count(kind, len(sessions))
        return len(sessions)

    def go_silent(self, seconds: float) -> int:
        """Every connection stops sending anything (pings too) for ``seconds``; nothing is
        closed and nothing generated meanwhile is lost (it is sent afterwards)."""
        return self._hold("silent", "silent_until", seconds)

    def delay(self, seconds: float) -> int:
        """Hold every connection's data frames for ``seconds`` (pings still flow)."""
        return self._hold("delay", "hold_until", seconds)

    def _hold(self, kind: str, attribute: str, seconds: float) -> int:
        sessions = self._sessions()
        until = trio.current_time() + seconds
        for session in sessions:
            setattr(session, attribute, max(getattr(session, attribute), until))
            session.wake()
        self.count(kind, len(sessions))
        return len(sessions)

    def skip_seq(self, n: int = 1) -> None:
        """On every connection, the next sequenced frame jumps ``n`` seqs ahead (one gap,
        counted when it is sent)."""
        for session in self._sessions():
            session.pending_skip += n

    def repeat_seq(self, n: int = 1) -> None:
        """On every connection, the next sequenced frame is sent ``n`` more times (counted
        per duplicate sent)."""
        for session in self._sessions():
            session.pending_repeat += n

    def send_malformed(self, kind: str) -> int:
        """Send one bad frame on every connection: ``json`` (not JSON), ``truncated`` (a
        real frame cut in half), ``unknown_type`` (a well-formed frame of an unknown type),
        ``wrong_type`` (a ticker frame with a number where a string belongs). None of them
        consumes a seq."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"malformed kind must be one of {MALFORMED_KINDS}, got {kind!r}")
        sessions = self._sessions()
        for session in sessions:
            session.send_malformed(kind)
        self.count("malformed", len(sessions))
        return len(sessions)

    def cross_book(self) -> int:
        """On every connection with an order-book subscription, one delta that crosses a
        subscribed market's book (YES bid at the YES ask) and is never applied to the
        truth: the book stays wrong until a snapshot (counted per delta sent)."""
        sent = sum(session.send_crossing_delta() for session in self._sessions())
        self.count("cross_book", sent)
        return sent

    def next_malformed_kind(self) -> str:
        kind = MALFORMED_KINDS[self._malformed_next % len(MALFORMED_KINDS)]
        self._malformed_next += 1
        return kind

    def rest_429(self, seconds: float) -> None:
        """Answer every REST request with 429 ``{"error":"too many requests"}`` for
        ``seconds`` (counted per answer)."""
        self.rest_429_until = max(self.rest_429_until, trio.current_time() + seconds)

    def rest_5xx(self, seconds: float) -> None:
        """Answer every REST request with 503 for ``seconds`` (counted per answer)."""
        self.rest_5xx_until = max(self.rest_5xx_until, trio.current_time() + seconds)

    def stuck_cursor(self, seconds: float) -> None:
        """For ``seconds``, every paginated REST list (``/markets``, ``/markets/trades``,
        ``/events``) answers a page that has a successor with the cursor it was asked for
        (the first page with its usual cursor): a client that trusts cursors loops forever
        (counted per stuck answer)."""
        self.stuck_cursor_until = max(self.stuck_cursor_until, trio.current_time() + seconds)

    def unanswered(self, seconds: float) -> None:
        """For ``seconds``, WebSocket commands are lost: no effect and no reply (counted per
        command)."""
        self.unanswered_until = max(self.unanswered_until, trio.current_time() + seconds)

    def bare_subscribed(self, seconds: float) -> None:
        """For ``seconds``, ``subscribed`` replies take an older shape: no ``msg``, no sid,
        just ``{"type":"subscribed","id":N}`` (counted per reply)."""
        self.bare_subscribed_until = max(self.bare_subscribed_until, trio.current_time() + seconds)

    def refuse_connections(self, seconds: float) -> None:
        """Reset every new TCP connection (REST and WebSocket) for ``seconds`` (counted per
        connection refused)."""
        self.refuse_until = max(self.refuse_until, trio.current_time() + seconds)


@frozen
class FaultStep:
    kind: str
    at: float  # seconds after start of the first occurrence
    every: float | None  # repeat period, None = once
    arg: float  # duration (timed kinds) or count (seq kinds)


def _duration(text: str, where: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(
            f"faults: {where}: expected a duration like 500ms, 5s or 1.5m, got {text!r}"
        )
    value = float(match[1])
    return value / 1000 if match[2] == "ms" else value * 60 if match[2] == "m" else value


@frozen
class FaultPlan:
    """A schedule of faults, relative to the exchange's start."""

    steps: tuple[FaultStep, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse the grammar above; raises ConfigError naming the bad entry."""
        steps = []
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            kind, eq, when = entry.partition("=")
            kind = kind.strip()
            if not eq or kind not in _KINDS:
                raise ConfigError(
                    f"faults: {entry!r}: expected KIND=every:DUR or KIND=at:DUR, KIND one of "
                    + ", ".join(sorted(_KINDS))
                )
            mode, _, rest = when.partition(":")
            if mode not in ("every", "at") or not rest:
                raise ConfigError(f"faults: {entry!r}: expected every:DUR or at:DUR after '='")
            first, _, arg_text = rest.partition(":")
            at = _duration(first, entry)
            if kind in _TIMED:
                arg = _duration(arg_text, entry) if arg_text else 3.0
            elif kind in _COUNTED:
                if arg_text and not arg_text.isdigit():
                    raise ConfigError(f"faults: {entry!r}: the count must be a whole number")
                arg = float(arg_text or (1008 if kind == "close" else 1))
            elif arg_text:
                raise ConfigError(f"faults: {entry!r}: {kind} takes no argument")
            else:
                arg = 0.0
            if mode == "every" and at <= 0:
                raise ConfigError(f"faults: {entry!r}: the period must be positive")
            steps.append(FaultStep(kind, at, at if mode == "every" else None, arg))
        return cls(tuple(steps))

    async def run(
        self, faults: Faults, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Apply the steps on time until cancelled (returns when no step is left)."""
        start = trio.current_time()
        task_status.started()
        async with trio.open_nursery() as nursery:
            for step in self.steps:
                nursery.start_soon(_run_step, step, faults, start)


async def _run_step(step: FaultStep, faults: Faults, start: float) -> None:
    when = start + step.at
    while True:
        await trio.sleep_until(when)
        apply(step, faults)
        if step.every is None:
            return
        when += step.every


def apply(step: FaultStep, faults: Faults) -> None:
    """Inject one occurrence of ``step`` now."""
    kind, arg = step.kind, step.arg
    if kind in ("drop", "drop_abrupt"):
        faults.drop_connections(abrupt=kind == "drop_abrupt")
    elif kind == "close":
        faults.drop_connections(code=int(arg))
    elif kind == "cross_book":
        faults.cross_book()
    elif kind == "silent":
        faults.go_silent(arg)
    elif kind == "delay":
        faults.delay(arg)
    elif kind == "skip_seq":
        faults.skip_seq(int(arg))
    elif kind == "repeat_seq":
        faults.repeat_seq(int(arg))
    elif kind == "malformed":
        faults.send_malformed(faults.next_malformed_kind())
    elif kind.startswith("malformed_"):
        faults.send_malformed(kind.removeprefix("malformed_"))
    elif kind == "rest429":
        faults.rest_429(arg)
    elif kind == "rest5xx":
        faults.rest_5xx(arg)
    elif kind == "stuck_cursor":
        faults.stuck_cursor(arg)
    elif kind == "unanswered":
        faults.unanswered(arg)
    elif kind == "bare_subscribed":
        faults.bare_subscribed(arg)
    else:
        faults.refuse_connections(arg)
