"""`kalshi replay --continuity` of a gatherer journal: its sessions, and every stretch the
journal does not cover for a market (outside tester pbreak8 F1: a 30 s outage of a killed
gatherer was reported `contiguous: complete`, and no session line was printed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from replay_support import (
    BASE_US,
    GATHERER,
    OB_CONN,
    T1,
    T2,
    TRADE_CONN,
    delta,
    kalshi,
    scripted_session,
    snapshot,
    subscribed,
    trade,
    write_journal,
)
from test_capture import RECV, conn_of, wrapped, write

from kalshi.journal import read_journal
from kalshi.replay import Replayer, book_from_journal
from kalshi.replay.source import read_records

# The gatherer killed after the scripted session, started again 10 s later.
OB2, TR2 = OB_CONN + 10_000_000, OB_CONN + 10_000_001
DOWN = "orderbook-0: gatherer down since its last orderbook_delta frame"


def restarted() -> list[tuple[object, ...]]:
    t = OB2
    return [
        ("marker", OB2, "connect", t, {"label": "orderbook-0", "channels": ["orderbook_delta"]}),
        ("marker", TR2, "connect", t + 1, {"label": "trade-0", "channels": ["trade"]}),
        ("in", OB2, 1, t + 100, subscribed(1, "orderbook_delta")),
        ("in", TR2, 1, t + 110, subscribed(1, "trade")),
        ("in", OB2, 2, t + 200, snapshot(1, 1, T1, yes=[("0.4000", "10.00")])),
        ("in", TR2, 2, t + 250, trade(1, 1, T1, "tr-9", "0.4000", "1.00")),
        ("in", OB2, 3, t + 300, delta(1, 2, T1, "0.4000", "1.00")),
        # the outage of the order-book channel, journaled once resubscribed; none for trades
        ("marker", OB2, "gap", t + 301, {"row": [BASE_US + 900, t + 301, "g-1", OB2, 1, None,
                                                  "outage", None, None, DOWN]}),
    ]  # fmt: skip


async def test_a_journal_names_its_sessions_and_every_stretch_not_recorded(
    tmp_path: Path,
) -> None:
    await write_journal(tmp_path / "journal", [*scripted_session(), *restarted()])
    result = kalshi("replay", "journal", "--continuity", "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = result.stderr.splitlines()
    end = report.index(next(line for line in report if line.startswith("replayed ")))
    assert report[:end] == [
        "continuity:",
        f"  session {OB_CONN} (gatherer g-1, orderbook-0): 9 frames 2026-11-24T22:59:00.001Z"
        " .. 2026-11-24T22:59:00.001Z; seq check contiguous; ended: test over",
        f"  session {TRADE_CONN} (gatherer g-1, trade-0): 3 frames 2026-11-24T22:59:00.001Z"
        " .. 2026-11-24T22:59:00.001Z; seq check contiguous; ended: no disconnect marker",
        f"  session {OB2} (gatherer g-1, orderbook-0): 3 frames 2026-11-24T22:59:10.000Z"
        " .. 2026-11-24T22:59:10.000Z; seq check contiguous; ended: end of journal",
        f"  session {TR2} (gatherer g-1, trade-0): 2 frames 2026-11-24T22:59:10.000Z"
        " .. 2026-11-24T22:59:10.000Z; seq check contiguous; ended: end of journal",
        f"  {T1}: 3 snapshot(s), 4 delta(s), 2 trade(s) in 4 session(s); 1 sequence gap(s):"
        " frames lost; 2 stretch(es) not recorded: no disconnect marker"
        " 2026-11-24T22:59:00.001250Z .. 2026-11-24T22:59:10.000250Z (trade-0: session"
        f" {TRADE_CONN} stopped, session {TR2} began; no gap journaled), outage"
        f" 2026-11-24T22:59:00.001900Z .. 2026-11-24T22:59:10.000301Z ({DOWN}); book consistent",
        # T2 was not carried after the restart, but the outage is its channel's (outside
        # tester pbreak9 N1): it was not recorded either while the gatherer was down
        f"  {T2}: 1 snapshot(s), 1 delta(s), 1 trade(s) in 2 session(s); 1 sequence gap(s):"
        " frames lost; 1 stretch(es) not recorded: outage 2026-11-24T22:59:00.001900Z .."
        f" 2026-11-24T22:59:10.000301Z ({DOWN}); book stale: sequence gap: sid 1 seq 5-6"
        " missing",
    ]
    # the orderbook-0 session's disconnect (its last frame to the next session's first) is
    # inside the outage journaled for it: named once, as the outage


# Outside tester pbreak9 N1: a market on orderbook-0 (connection A) before the gatherer went
# down and on orderbook-1 (connection C) after; the one order-book outage journaled is on
# the new orderbook-0 (connection B), which never carried it. Before, its verdict read
# `contiguous: complete` while `kalshi snapshot` said `stale: outage` inside the stretch.
A, B = OB_CONN, OB_CONN + 30_000_000
C = B + 1
AFTER = BASE_US + 30_000_000  # the restart
OUTAGE = "2026-11-24T22:59:00.001300Z .. 2026-11-24T22:59:30.001300Z"


def moved(*, clean: bool, outage: bool) -> list[tuple[object, ...]]:
    t, r = BASE_US, AFTER
    book = {"channels": ["orderbook_delta"]}
    entries: list[tuple[object, ...]] = [
        ("marker", A, "connect", t, {"label": "orderbook-0", **book}),
        ("in", A, 1, t + 100, subscribed(1, "orderbook_delta")),
        ("in", A, 2, t + 200, snapshot(1, 1, T1, yes=[("0.4000", "10.00")])),
        ("in", A, 3, t + 300, delta(1, 2, T1, "0.4000", "1.00")),
    ]
    if clean:  # a SIGINT: the connection's disconnect marker
        entries.append(("marker", A, "disconnect", t + 400, {"reason": "gatherer stopping"}))
    entries += [
        ("marker", B, "connect", r, {"label": "orderbook-0", **book}),
        ("marker", C, "connect", r + 1, {"label": "orderbook-1", **book}),
        ("in", B, 1, r + 100, subscribed(1, "orderbook_delta")),
        ("in", C, 1, r + 110, subscribed(1, "orderbook_delta")),
        ("in", B, 2, r + 200, snapshot(1, 1, T2, yes=[("0.1000", "1.00")])),
        ("in", C, 2, r + 210, snapshot(1, 1, T1, yes=[("0.4000", "12.00")])),
    ]
    if outage:  # from the channel's last frame to the first new subscription's end
        row = [t + 300, r + 300, GATHERER, B, 1, None, "outage", None, None, DOWN]
        entries.append(("marker", B, "gap", r + 300, {"row": row}))
    return entries


@pytest.mark.parametrize(
    ("clean", "outage", "stretch"),
    [
        (False, True, f"outage {OUTAGE} ({DOWN})"),
        (True, True, f"outage {OUTAGE} ({DOWN})"),
        (
            False,
            False,
            "no disconnect marker 2026-11-24T22:59:00.001300Z .. 2026-11-24T22:59:30.001210Z"
            f" (orderbook-0: session {A} stopped, orderbook-1: session {C} began; no gap"
            " journaled)",
        ),
        (
            True,
            False,
            "disconnect 2026-11-24T22:59:00.001300Z .. 2026-11-24T22:59:30.001210Z"
            f" (orderbook-0: session {A}: gatherer stopping)",
        ),
    ],
)
async def test_a_market_moved_to_another_label_across_an_outage_is_not_complete(
    tmp_path: Path, clean: bool, outage: bool, stretch: str
) -> None:
    """The outage is one per channel: it covers every market of the gatherer's order-book
    channel, whichever connection carried it; without one, the market's break from
    orderbook-0 to orderbook-1 is named. Killed (no disconnect marker) or stopped cleanly."""
    files = await write_journal(tmp_path / "journal", moved(clean=clean, outage=outage))
    result = kalshi("replay", "journal", "--continuity", "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = result.stderr.splitlines()
    end = report.index(next(line for line in report if line.startswith("replayed ")))
    ended = "gatherer stopping" if clean else "no disconnect marker"
    assert report[:end] == [
        "continuity:",
        f"  session {A} (gatherer g-1, orderbook-0): 3 frames 2026-11-24T22:59:00.001Z"
        f" .. 2026-11-24T22:59:00.001Z; seq check contiguous; ended: {ended}",
        f"  session {B} (gatherer g-1, orderbook-0): 2 frames 2026-11-24T22:59:30.001Z"
        " .. 2026-11-24T22:59:30.001Z; seq check contiguous; ended: end of journal",
        f"  session {C} (gatherer g-1, orderbook-1): 2 frames 2026-11-24T22:59:30.001Z"
        " .. 2026-11-24T22:59:30.001Z; seq check contiguous; ended: end of journal",
        f"  {T1}: 2 snapshot(s), 1 delta(s), 0 trade(s) in 2 session(s); contiguous: complete"
        f" within its sessions; 1 stretch(es) not recorded: {stretch}; book consistent",
        f"  {T2}: 1 snapshot(s), 0 delta(s), 0 trade(s) in 1 session(s); "
        + (
            f"contiguous: complete within its sessions; 1 stretch(es) not recorded: {stretch};"
            if outage
            else "contiguous: complete;"
        )
        + " book consistent",
    ]
    # the snapshot route's staleness for T1 inside the stretch agrees with the verdict (a
    # clean stop: its disconnect first)
    inside = book_from_journal(read_journal(files), T1, BASE_US + 15_000_000)
    if clean:
        stale = f"disconnect: connection {A} ended"
    elif outage:
        stale = f"outage from {OUTAGE.replace(' .. ', ' to ')}: {DOWN}"
    else:
        stale = (
            "nothing journaled from 2026-11-24T22:59:00.001300Z to 2026-11-24T22:59:15.001000Z:"
            " not recorded"
        )
    assert (inside.stale, inside.detail) == (True, stale)


def test_a_captures_seq_restart_is_a_stretch_not_recorded(tmp_path: Path) -> None:
    """A capture has no gap markers: the break between two of its sessions (a seq restart:
    the recorder reconnected) is named, from the last frame before to the first after."""
    lines = [
        wrapped(RECV, snapshot(1, 500, T1, yes=[("0.4000", "10.00")])),
        wrapped(RECV + 1, delta(1, 501, T1, "0.4000", "-2.00")),
        wrapped(RECV + 9, snapshot(1, 1, T1, yes=[("0.4000", "7.00")])),
        wrapped(RECV + 10, delta(1, 2, T1, "0.4000", "1.00")),
    ]
    path = write(tmp_path / "c.jsonl", lines)
    replayer = Replayer()
    replayer.feed_all(read_records([path]))
    continuity = replayer.continuity
    view = continuity.markets[T1]
    one = conn_of(lines[0])
    assert continuity.stretches(view) == [
        "disconnect 2026-11-24T22:59:00.001000Z .. 2026-11-24T22:59:00.009000Z"
        f" (capture: session {one}: seq restart: sid 1 seq 1 after 501)"
    ]
    assert view.verdict(None, continuity.stretches(view)) == (
        "contiguous: complete within its sessions; 1 stretch(es) not recorded: disconnect"
        " 2026-11-24T22:59:00.001000Z .. 2026-11-24T22:59:00.009000Z"
        f" (capture: session {one}: seq restart: sid 1 seq 1 after 501); book consistent"
    )
