"""A frame refused (invalid, unknown type) is counted, and the gatherer's first ten are
each logged with where it is (connection, journal conn and frame number, sid and seq) and
what is wrong: the field and why (issue F8)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from kalshi.gather.connection import BAD_FRAMES_LOGGED, Connection
from tests.gather.test_commands import exchange
from tests.gather.test_liveness import collecting_context


async def test_the_first_bad_frames_are_located_and_the_rest_counted(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kalshi.gather.connection")
    async with exchange() as sim, trio.open_nursery() as nursery:
        ctx, _ = collecting_context(sim, tmp_path, nursery)
        conn = Connection(ctx, "ticker-0", "ticker", scoped=False)
        nursery.start_soon(conn.run)
        with trio.fail_after(60):
            while conn.state != "live":  # noqa: ASYNC110
                await trio.sleep(0.05)
        sim.engine.pause()
        for kind in ["wrong_type"] * 11 + ["unknown_type"]:
            sim.faults.send_malformed(kind)
        counts = ctx.processor.counts
        with trio.fail_after(60):
            while counts["invalid"] + counts["unknown_type"] < 12:  # noqa: ASYNC110
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    mine = [r for r in caplog.records if r.name == "kalshi.gather.connection"]
    warned = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
    first = int(warned[0].split(" frame ")[1].split()[0])
    why = "invalid: ticker: price_dollars: price: expected a decimal string, got float"
    where = f"ticker-0 (conn {conn.conn_id}) frame"
    more = "; further refused frames are counted only (kalshi_decode_errors_total)"
    assert BAD_FRAMES_LOGGED == 10
    assert warned == [f"{where} {first + i} sid 1: {why}" for i in range(9)] + [
        f"{where} {first + 9} sid 1: {why}{more}"
    ]
    debug = [r.getMessage() for r in mine if r.levelno == logging.DEBUG and "frame" in r.msg]
    assert debug[-2:] == [
        f"ticker-0: frame {first + 10}: {why}",
        f"ticker-0: frame {first + 11}: unknown_type: market_mood",
    ]
    assert (counts["invalid"], counts["unknown_type"], ctx.bad_frames_logged) == (11, 1, 12)
