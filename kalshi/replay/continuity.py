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
(:meth:`Continuity.stretches`): the gaps the gatherer journaled (``gap`` markers: an
``outage`` while it was down, a ``reconnect``, ...) on a connection that carried the
market or naming it, and a session ended by a ``disconnect`` marker before the market's
next session began, unless a journaled gap already covers that stretch.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import define, field

from kalshi.journal import JournalRecord
from kalshi.models.rows import GapRow
from kalshi.models.units import format_rfc3339_us
from kalshi.pipeline import Outcome

__all__ = ["Continuity", "MarketView", "SessionView"]


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
    # the (session, rule) last added to ``sessions``/``rules``: skips re-adding per frame
    seen: object = field(default=None, repr=False, eq=False)

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
        each journaled gap on a connection that carried the market (or naming it; not a
        trades ``backfill``, which repairs an outage named on its own), then each break
        between two of its sessions of one gatherer and label (a capture: its sessions in
        turn), from the earlier one's last frame to the later one's first, where no such
        gap of that label overlaps it: ``disconnect`` (the earlier one ended by a marker,
        with its reason) or ``no disconnect marker`` (the gatherer stopped without one,
        e.g. killed, and journaled no gap). One string each: kind, span (µs, RFC 3339)
        and detail."""
        found: list[tuple[int, str]] = []
        spans: list[tuple[str, str, int, int]] = []  # gatherer, label, start, end
        for row in self.gaps.values():
            if row.kind == "backfill":
                continue
            key = (row.gatherer_id, row.conn_id)
            if row.ticker != view.ticker and (row.ticker is not None or key not in view.sessions):
                continue
            end = row.end_ts
            carrier = self.sessions.get(key)
            label = carrier.label if carrier is not None else ""
            spans.append((row.gatherer_id, label, row.start_ts, end if end is not None else 2**62))
            found.append((row.start_ts, f"{row.kind} {_span(row.start_ts, end)} ({row.detail})"))
        mine = [self.sessions[key] for key in view.sessions if key in self.sessions]
        for before in mine:
            if before.last_us is None:
                continue
            last = before.last_us
            later = [
                s
                for s in mine
                if s.gatherer_id == before.gatherer_id
                and s.label == before.label
                and s.first_us is not None
                and s.first_us > last
            ]
            if not later:
                continue
            after = min(later, key=lambda s: s.first_us or 0)
            first = after.first_us or 0
            if any(
                g == before.gatherer_id and lab == before.label and a <= first and b >= last
                for g, lab, a, b in spans
            ):
                continue
            name = f"{before.label}: " if before.label else ""
            if before.ended:
                why = (
                    f"disconnect {_span(last, first)} ({name}session {before.conn_id}:"
                    f" {before.ended})"
                )
            else:
                why = (
                    f"no disconnect marker {_span(last, first)} ({name}session {before.conn_id}"
                    f" stopped, session {after.conn_id} began; no gap journaled)"
                )
            found.append((last, why))
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


def _span(start: int, end: int | None) -> str:
    last = "open" if end is None else format_rfc3339_us(end, digits=6)
    return f"{format_rfc3339_us(start, digits=6)} .. {last}"
