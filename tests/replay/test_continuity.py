"""`kalshi replay --continuity` of a gatherer journal: its sessions, and every stretch the
journal does not cover for a market (outside tester pbreak8 F1: a 30 s outage of a killed
gatherer was reported `contiguous: complete`, and no session line was printed)."""

from __future__ import annotations

from pathlib import Path

from replay_support import (
    BASE_US,
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
        " 2026-11-24T22:59:00.001350Z .. 2026-11-24T22:59:10.000110Z (trade-0: session"
        f" {TRADE_CONN} stopped, session {TR2} began; no gap journaled), outage"
        f" 2026-11-24T22:59:00.001900Z .. 2026-11-24T22:59:10.000301Z ({DOWN}); book consistent",
        # T2 was not carried after the restart: the outage of its new connection is not its
        f"  {T2}: 1 snapshot(s), 1 delta(s), 1 trade(s) in 2 session(s); 1 sequence gap(s):"
        " frames lost; book stale: sequence gap: sid 1 seq 5-6 missing",
    ]
    # the orderbook-0 session's disconnect (its last frame to the next session's first) is
    # inside the outage journaled for it: named once, as the outage
