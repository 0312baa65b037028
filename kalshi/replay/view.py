"""A reconstructed book as a rich table or a JSON document (pure; no I/O).

Both sides are bids, best first: YES bids at YES prices and NO bids at NO-leg prices (the
exchange's convention; a NO bid at p is a YES ask at 1 - p). Prices and sizes are printed
with :func:`~kalshi.models.units.format_price` / ``format_size`` (exact decimal strings).
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from kalshi.models.book import Side
from kalshi.models.units import format_price, format_rfc3339_us, format_size
from kalshi.replay.continuity import Continuity, SessionView, channel_of
from kalshi.replay.core import Replayer
from kalshi.replay.pointintime import BookAt

__all__ = ["book_document", "book_table", "ladder"]


def ladder(book_at: BookAt, side: Side, depth: int | None) -> list[tuple[int, int, int]]:
    """``(price, size, cumulative size)`` of ``side``, best (highest) bid first."""
    out: list[tuple[int, int, int]] = []
    total = 0
    for price, size in sorted(book_at.book.side(side).items(), reverse=True)[:depth]:
        total += size
        out.append((price, size, total))
    return out


def _price(value: int | None) -> str | None:
    return None if value is None else format_price(value)


def book_document(book_at: BookAt, depth: int | None = None) -> dict[str, Any]:
    """The book as JSON-ready values: decimal strings, times in RFC 3339 and µs."""
    book = book_at.book
    bid, ask = book.best_yes_bid(), book.best_yes_ask()

    def levels(side: Side) -> list[dict[str, str]]:
        return [
            {"price": format_price(p), "size": format_size(s), "cumulative": format_size(c)}
            for p, s, c in ladder(book_at, side, depth)
        ]

    return {
        "ticker": book.ticker,
        "source": book_at.source,
        "as_of": format_rfc3339_us(book_at.as_of_us, digits=6),
        "as_of_us": book_at.as_of_us,
        "stale": book_at.stale,
        "detail": book_at.detail,
        "best_yes_bid": _price(bid[0] if bid else None),
        "best_yes_ask": _price(ask[0] if ask else None),
        "spread": _price(book.spread()),
        "yes": levels(Side.YES),
        "no": levels(Side.NO),
    }


def book_table(book_at: BookAt, depth: int | None = None) -> Group:
    """Side-by-side ladders, then best bid/ask, spread, source and time (and staleness)."""
    book = book_at.book
    yes, no = ladder(book_at, Side.YES, depth), ladder(book_at, Side.NO, depth)
    bid, ask = book.best_yes_bid(), book.best_yes_ask()
    spread = book.spread()
    table = Table(title=book.ticker)
    for name, style in (("yes bid", "green"), ("size", None), ("cum", "dim")):
        table.add_column(name, justify="right", style=style)
    for name, style in (("no bid", "red"), ("size", None), ("cum", "dim")):
        table.add_column(name, justify="right", style=style)
    for i in range(max(len(yes), len(no))):
        cells: list[str] = []
        for levels in (yes, no):
            if i < len(levels):
                p, s, c = levels[i]
                cells += [format_price(p), format_size(s), format_size(c)]
            else:
                cells += ["", "", ""]
        table.add_row(*cells)
    summary = Text(
        f"best yes bid {_price(bid[0]) if bid else '-'} · "
        f"best yes ask {_price(ask[0]) if ask else '-'} · "
        f"spread {_price(spread) if spread is not None else '-'}\n"
        f"{book_at.source} as of {format_rfc3339_us(book_at.as_of_us, digits=6)}"
    )
    if book_at.stale:
        summary.append(f"\nstale: {book_at.detail}", style="bold red")
    return Group(table, summary)


def session_lines(continuity: Continuity, *, journal: bool = False) -> list[str]:
    """One line per captured session: its source, span, sequence rule and why, where its
    times come from, and how it ended. ``journal``: a gatherer journal's connections too
    (gatherer, label, frames, span, rule, how it ended: a ``disconnect`` marker's reason,
    ``no disconnect marker`` when a session of its channel began after its last frame, e.g.
    the gatherer was killed, else ``end of journal``)."""
    lines = []
    sessions = list(continuity.sessions.values())
    for view in sessions:
        span = ""
        if view.first_us is not None and view.last_us is not None:
            span = (
                f" {format_rfc3339_us(view.first_us, digits=3)}"
                f" .. {format_rfc3339_us(view.last_us, digits=3)}"
            )
        if not view.reason:
            if journal:
                lines.append(_journal_session(view, span, sessions))
            continue
        reordered = ""
        if view.reordered:
            reordered = f" ({view.reordered:,} put back in seq order)"
        lines.append(
            f"session {view.conn_id} ({view.source}): {view.frames:,} frames{reordered}{span}; "
            f"seq check {view.seq_check} ({view.reason}); {view.time}; "
            f"ended: {view.ended or 'end of capture'}"
        )
    return lines


def _journal_session(view: SessionView, span: str, sessions: list[SessionView]) -> str:
    ended = view.ended
    if not ended:
        later = any(
            s.gatherer_id == view.gatherer_id
            and channel_of(s.label) == channel_of(view.label)
            and (
                s.first_us > view.last_us
                if s.first_us is not None and view.last_us is not None
                else s.conn_id > view.conn_id
            )
            for s in sessions
        )
        ended = "no disconnect marker" if later else "end of journal"
    return (
        f"session {view.conn_id} (gatherer {view.gatherer_id}, {view.label or 'no label'}): "
        f"{view.frames:,} frames{span}; seq check {view.seq_check}; ended: {ended}"
    )


def continuity_report(replayer: Replayer) -> str:
    """What the recording proves: the sessions, then one line per market with its frames
    and verdict (:meth:`~kalshi.replay.continuity.MarketView.verdict`)."""
    continuity = replayer.continuity
    lines = ["continuity:", *("  " + line for line in session_lines(continuity, journal=True))]
    causes: dict[str, str] = {}
    for proc in replayer.processors.values():
        causes.update(proc.stale_cause)
    for ticker in sorted(continuity.markets):
        view = continuity.markets[ticker]
        counts = (
            f"{view.snapshots:,} snapshot(s), {view.deltas:,} delta(s), {view.trades:,} trade(s)"
        )
        if view.other:
            counts += f", {view.other:,} other"
        sessions = len(view.sessions)
        verdict = view.verdict(causes.get(ticker), continuity.stretches(view))
        lines.append(f"  {ticker}: {counts} in {sessions} session(s); {verdict}")
    return "\n".join(lines)
