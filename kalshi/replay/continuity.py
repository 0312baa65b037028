"""What a replayed recording can and cannot prove, per session and per market.

Fed by :class:`~kalshi.replay.core.Replayer` with every frame's outcome. The proof a
recording gives depends on its sequence rule (``docs/replay.md``, "Captures"):

* ``contiguous``: every ``seq`` of a subscription is present (``kalshi-api.md``, "Sequence
  numbers"), so a market's frames are **complete** between its snapshot and the end, or a
  ``seq_gap`` says where they are not;
* ``filtered``: a skipped ``seq`` may be another market's frame or a lost one; a market's
  completeness **cannot be proven**. What is still checked: every delta applies to its book
  (a lost delta usually shows as a level going negative: ``book_invalid``) and each session
  starts the market's book from a snapshot.

Either way the verdict names every stretch the recording does not cover for the market
(:meth:`Continuity.stretches`): the gaps the gatherer journaled (``gap`` markers) that apply
to it: one naming it, one of a connection that carried it, and an ``outage`` (the gatherer
was down; one per channel, journaled on whichever connection of the channel resubscribed
first) of any channel of that gatherer that carried it; and each break in its frames between
two sessions of one gatherer and channel (``orderbook-0`` then ``orderbook-1``: a market
moves between connections at a restart) that no such gap covers. The verdict then agrees
with the staleness ``kalshi snapshot`` gives for the market at a time in that stretch
(``kalshi/replay/pointintime.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import define, field

from kalshi.journal import JournalRecord
from kalshi.models.rows import GapRow
from kalshi.models.units import format_rfc3339_us
from kalshi.pipeline import Outcome

__all__ = ["Continuity", "MarketView", "SessionView", "channel_of"]


@define
class SessionView:
    """One recorded connection: where it came from, its rule and why, its span."""

    gatherer_id: str
    conn_id: int
    source: str
    seq_check: str
    reason: str
    time: str
    frames: int = 0
    first_us: int | None = None
    last_us: int | None = None
    ended: str = ""  # the disconnect marker's reason
    reordered: int = 0  # frames the capture reader put back in seq order
    label: str = ""  # a gatherer's connection label (orderbook-0, trade-0, ...)


@define
class MarketView:
    """One market across the recording. ``after_skip``: its frames that followed a skipped
    ``seq`` on their subscription (filtered: unknown whether anything was lost there);
    ``gaps``: sequence gaps seen on its frames or on its order-book subscription
    (contiguous: frames lost)."""

    ticker: str
    snapshots: int = 0
    deltas: int = 0
    trades: int = 0
    other: int = 0
    after_skip: int = 0
    gaps: int = 0
    book_invalid: int = 0
    sessions: set[tuple[str, int]] = field(factory=set)
    rules: set[str] = field(factory=set)
    first_us: int | None = None
    last_us: int | None = None
    # per session key: [the market's first frame there, its last] (µs)
    spans: dict[tuple[str, int], list[int]] = field(factory=dict, repr=False)
    # the (session, rule) last added to ``sessions``/``rules``: skips re-adding per frame
    seen: object = field(default=None, repr=False, eq=False)
    span: list[int] = field(factory=lambda: [0, 0], repr=False, eq=False)  # the current one

    def verdict(self, stale_cause: str | None, stretches: Sequence[str] = ()) -> str:
        """One line: what this market's frames prove; ``stretches``: those the recording
        does not cover for it (:meth:`Continuity.stretches`), each named."""
        parts: list[str] = []
        if "filtered" in self.rules:
            parts.append(
                f"filtered: completeness not provable ({self.after_skip:,} frame(s) after a "
                "skipped seq)"
            )
        if self.gaps:
            parts.append(f"{self.gaps:,} sequence gap(s): frames lost")
        elif ("contiguous" in self.rules or not self.rules) and not stretches:
            parts.append("contiguous: complete")
        elif "contiguous" in self.rules or not self.rules:
            parts.append("contiguous: complete within its sessions")
        if stretches:
            parts.append(f"{len(stretches):,} stretch(es) not recorded: " + ", ".join(stretches))
        if self.book_invalid:
            parts.append(f"{self.book_invalid:,} invalid delta(s)")
        if stale_cause:
            parts.append(f"book stale: {stale_cause}")
        elif self.snapshots:
            parts.append("book consistent")
        return "; ".join(parts)


class Continuity:
    """Accumulates :class:`SessionView` and :class:`MarketView` during a replay."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, int], SessionView] = {}
        self.markets: dict[str, MarketView] = {}
        self._rules: dict[tuple[str, int], str] = {}
        # a capture session's later connections (one a file) -> its first one's key
        self._alias: dict[tuple[str, int], tuple[str, int]] = {}
        # The connection of the previous frame: (gatherer_id, conn_id), its session view and
        # (key, rule). Frames come in runs of one connection; a marker resets it.
        self._conn: tuple[str, int] | None = None
        self._session: SessionView | None = None
        self._seen: tuple[tuple[str, int], str] = (("", 0), "")
        # Each connection's session view and (key, rule), built once until the next marker:
        # the same (key, rule) object every run, so a market's sessions and rules are added
        # to only when its frames change connection, not at every change of run.
        self._known: dict[tuple[str, int], tuple[SessionView | None, tuple[tuple[str, int], str]]]
        self._known = {}
        # the gap rows journaled (gap markers), the last copy per key (open, then closed)
        self.gaps: dict[tuple[object, ...], GapRow] = {}

    def gap(self, row: GapRow) -> None:
        """A gap the gatherer journaled (its ``gap`` marker's row)."""
        key = (row.start_ts, row.gatherer_id, row.conn_id, row.sid, row.ticker, row.kind)
        self.gaps[key] = row

    def stretches(self, view: MarketView) -> list[str]:
        """What the recording does not cover for the market of ``view``, in time order:
        each journaled gap that applies to it (not a trades ``backfill``, which repairs an
        outage named on its own): one naming the market, one of a connection that carried
        it, or an ``outage`` (one per channel: the gatherer was down) of a channel of that
        gatherer that carried it, whichever connection; then each break between two of its
        sessions of one gatherer and channel, whatever their labels (a capture: its sessions
        in turn), from the market's last frame in the earlier session to its first in the
        later one, which began after the earlier one's last frame, where no gap that
        applies to it of that gatherer and channel overlaps it: ``disconnect`` (the earlier
        one ended by a marker, with its reason) or ``no disconnect marker`` (the gatherer
        stopped without one, e.g. killed, and journaled no gap). One string each: kind,
        span (µs, RFC 3339) and detail."""
        found: list[tuple[int, str]] = []
        mine = [
            (self.sessions[key], view.spans[key])
            for key in view.sessions
            if key in self.sessions and key in view.spans
        ]
        channels = {(s.gatherer_id, channel_of(s.label)) for s, _ in mine}
        spans: list[tuple[str, str, int, int]] = []  # gatherer, channel, start, end
        for row in self.gaps.values():
            if row.kind == "backfill":
                continue
            key = (row.gatherer_id, row.conn_id)
            carrier = self.sessions.get(key)
            label = carrier.label if carrier is not None else row.detail.partition(":")[0]
            channel = channel_of(label)
            if row.ticker is not None:
                if row.ticker != view.ticker:
                    continue
            elif key not in view.sessions and not (
                row.kind == "outage" and channel and (row.gatherer_id, channel) in channels
            ):
                continue
            end = row.end_ts
            spans.append(
                (row.gatherer_id, channel, row.start_ts, end if end is not None else 2**62)
            )
            found.append((row.start_ts, f"{row.kind} {_span(row.start_ts, end)} ({row.detail})"))
        groups: dict[tuple[str, str], list[tuple[SessionView, list[int]]]] = {}
        for session, span in mine:
            groups.setdefault((session.gatherer_id, channel_of(session.label)), []).append(
                (session, span)
            )
        for (gatherer, channel), held in groups.items():
            held.sort(key=lambda pair: pair[1][0])
            before, before_span = held[0]
            for after, after_span in held[1:]:
                last, first = before_span[1], after_span[0]
                if (
                    first > last
                    and before.last_us is not None
                    and after.first_us is not None
                    and after.first_us > before.last_us
                    and not any(
                        g == gatherer and c == channel and a <= first and b >= last
                        for g, c, a, b in spans
                    )
                ):
                    found.append((last, _break(before, after, last, first)))
                if after_span[1] >= before_span[1]:
                    before, before_span = after, after_span
        return [text for _, text in sorted(found)]

    def marker(self, item: JournalRecord, rule: str) -> None:
        key = (item.gatherer_id, item.conn_id)
        self._conn = None
        self._known.clear()
        if item.kind == "connect":
            detail = item.detail
            self._rules[key] = rule
            continues = detail.get("continues")  # a capture's earlier connection, or absent
            if isinstance(continues, int):
                before = (item.gatherer_id, continues)
                before = self._alias.get(before, before)
                if before in self.sessions:  # a capture session read on from its next file
                    self._alias[key] = before
                    return
            self.sessions[key] = SessionView(
                item.gatherer_id,
                item.conn_id,
                str(detail.get("url", "")),
                rule,
                str(detail.get("seq_check_reason", "")),
                str(detail.get("time", "")),
                label=str(detail.get("label", "")),
            )
        key = self._alias.get(key, key)
        if item.kind == "disconnect" and key in self.sessions:
            self.sessions[key].ended = str(item.detail.get("reason", "disconnect"))

    def frame(self, item: JournalRecord, out: Outcome) -> None:
        """One ``in`` frame and its outcome (:meth:`frames` of one)."""
        self.frames((item,), (out,))

    def frames(self, items: Sequence[JournalRecord], outcomes: Sequence[Outcome]) -> None:
        """``in`` frames and their outcomes, pairwise in order: each frame counts on its
        session (its span, how many, how many put back in seq order) and on its market
        (its span, its kind, a gap, a skip, an invalid delta). A session's counts are added
        once per run of its frames, not per frame."""
        markets = self.markets
        key, session, seen = self._conn, self._session, self._seen
        run = reordered = 0  # frames of the current run not yet counted on its session
        last = 0  # the receive time of the run's last frame
        for item, out in zip(items, outcomes, strict=True):
            wall = item.wall_us
            if key is None or key[1] != item.conn_id or key[0] != item.gatherer_id:
                if session is not None and run:
                    session.frames += run
                    session.reordered += reordered
                    session.last_us = last
                run = reordered = 0
                key = (item.gatherer_id, item.conn_id)
                known = self._known.get(key)
                if known is None:
                    first = self._alias.get(key, key)  # a capture session's first file's
                    rule = self._rules.get(key, "contiguous")
                    known = self._known[key] = (self.sessions.get(first), (first, rule))
                session, seen = known
                if session is not None and session.first_us is None:
                    session.first_us = wall
            run += 1
            last = wall
            if item.detail:  # a capture's frame put back in seq order
                reordered += 1
            msg = out.message
            if msg is None:
                continue
            ticker = getattr(msg.body, "ticker", None)
            if type(ticker) is not str:
                continue
            view = markets.get(ticker)
            if view is None:
                view = markets[ticker] = MarketView(ticker)
            if view.first_us is None:
                view.first_us = wall
            view.last_us = wall
            if view.seen is not seen:
                view.seen = seen
                view.sessions.add(seen[0])
                view.rules.add(seen[1])
                view.span = view.spans.setdefault(seen[0], [wall, wall])
            view.span[1] = wall
            kind = msg.type
            if kind == "orderbook_delta":
                view.deltas += 1
            elif kind == "orderbook_snapshot":
                view.snapshots += 1
            elif kind == "trade":
                view.trades += 1
            else:
                view.other += 1
            if out.gap:
                # An order-book gap concerns every market on the subscription (those it
                # made stale); a trade gap cannot be attributed: it counts on the frame's
                # market.
                for name in set(out.resnapshot) | {ticker}:
                    other = markets.get(name)
                    if other is None:
                        other = markets[name] = MarketView(name)
                    other.gaps += 1
            elif out.skip:
                view.after_skip += 1
            if out.problem == "book_invalid":
                view.book_invalid += 1
        if session is not None and run:
            session.frames += run
            session.reordered += reordered
            session.last_us = last
        self._conn, self._session, self._seen = key, session, seen


def channel_of(label: str) -> str:
    """A connection label's channel: ``orderbook-1`` -> ``orderbook`` (the gatherer's
    ``<channel>-<n>``, ``kalshi/gather/layout.py``); a label without a number as it is."""
    name, dash, number = label.rpartition("-")
    return name if dash and number.isdigit() else label


def _break(before: SessionView, after: SessionView, last: int, first: int) -> str:
    """A market's break from ``last`` (its last frame on ``before``) to ``first`` (its
    first on ``after``), named by how ``before`` ended."""
    name = f"{before.label}: " if before.label else ""
    if before.ended:
        return f"disconnect {_span(last, first)} ({name}session {before.conn_id}: {before.ended})"
    later = f"{after.label}: " if after.label and after.label != before.label else ""
    return (
        f"no disconnect marker {_span(last, first)} ({name}session {before.conn_id}"
        f" stopped, {later}session {after.conn_id} began; no gap journaled)"
    )


def _span(start: int, end: int | None) -> str:
    last = "open" if end is None else format_rfc3339_us(end, digits=6)
    return f"{format_rfc3339_us(start, digits=6)} .. {last}"
