"""What the simulated exchange queues for its WebSocket clients, byte for byte: a seeded
run's truth stream and every session's frames are pinned (a digest taken at c124d4f, before
the engine's, the broker's and the sessions' per-message work was cut, issue 20: the same
messages, the same order, the same bytes on every channel, ``use_yes_price`` and
``send_initial_snapshot`` included)."""

from __future__ import annotations

import hashlib
import io

import orjson
import trio
import trio.testing

from kalshi.sim.broker import SimSession
from kalshi.sim.server import SimExchange
from kalshi.testing import PINNED_START_US

# sha256 of the run below at commit c124d4f
PINNED_DIGEST = "56376e6b16ace3f69e206366b13ec24c93de5ffa2d8a136344289cd8e297f416"
COUNT = 34_593


def _subscribe(sim: SimExchange, params: list[dict[str, object]]) -> SimSession:
    """A session (no transport: its frames stay queued) with one subscribe per ``params``."""
    session = SimSession(sim, trio.testing.memory_stream_pair()[0])
    sim.sessions.add(session)
    for ident, p in enumerate(params, 1):
        session._command(orjson.dumps({"id": ident, "cmd": "subscribe", "params": p}).decode())
    return session


async def _run(actions: int) -> tuple[int, str]:
    now = [PINNED_START_US]

    def clock() -> int:
        now[0] += 1_371  # µs: every step a little later, deterministically
        return now[0]

    truth = io.BytesIO()
    sim = SimExchange(
        markets=3_000,
        rate=1.0,
        seed=9,
        active=300,
        busy=30,
        clock=clock,
        run_id=4,
        start_us=PINNED_START_US,
        keep_events=False,
        truth_stream=truth,
        tier=None,
        buffer_limit=1 << 40,
    )
    sim.engine.pause()
    tickers = sim.engine.active_tickers
    sessions = [
        _subscribe(sim, [{"channels": ["ticker"], "skip_ticker_ack": True}]),
        _subscribe(sim, [{"channels": ["trade"]}]),
        _subscribe(
            sim,
            [
                {"channels": ["market_lifecycle_v2"]},
                {"channels": ["multivariate_market_lifecycle"]},
            ],
        ),
        *(
            _subscribe(
                sim,
                [{"channels": ["orderbook_delta"], "market_tickers": tickers[k::6],
                  "skip_ticker_ack": True}],
            )
            for k in range(6)
        ),
        _subscribe(
            sim,
            [{"channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": tickers[::5],
              "use_yes_price": True, "send_initial_snapshot": True}],
        ),
        _subscribe(
            sim,
            [{"channels": ["ticker"], "market_tickers": tickers[:40],
              "send_initial_snapshot": True}],
        ),
    ]  # fmt: skip
    for i in range(actions // 10):
        sim.engine.step(10)
        if i % 400 == 399:  # a market settled, another listed (every other one a combo)
            sim.engine._churn()
        if i == actions // 20:  # markets added to a live subscription, with their tickers
            command = {
                "id": 99,
                "cmd": "update_subscription",
                "params": {
                    "sid": 1,
                    "action": "add_markets",
                    "market_tickers": sim.engine.active_tickers[-30:],
                    "send_initial_snapshot": True,
                },
            }
            sessions[-1]._command(orjson.dumps(command).decode())
    digest = hashlib.sha256(truth.getvalue())
    for session in sessions:
        digest.update(hashlib.sha256(b"".join(session._data)).digest())
    return sim.truth.generated, digest.hexdigest()


def test_a_seeded_run_queues_the_pinned_bytes_on_every_channel() -> None:
    generated, digest = trio.run(_run, 20_000)
    assert generated == COUNT
    assert digest == PINNED_DIGEST
