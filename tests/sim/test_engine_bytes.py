"""The engine's messages, byte for byte: a seeded run's stream is pinned (a digest taken
before the engine's encoding was made cheaper, issue 20: the same messages, the same order,
the same bytes), every ``msg`` is what orjson makes of its own decoding, and the sorted price
lists the engine keeps beside each book follow the book."""

from __future__ import annotations

import hashlib

import orjson

from kalshi.models.units import DOLLAR, format_price, parse_price
from kalshi.sim.engine import Engine
from kalshi.sim.truth import Truth
from kalshi.sim.universe import Universe
from kalshi.testing import PINNED_START_US

# sha256 of the run below at commit 9649abf (before the engine kept sorted price lists and
# encoded deltas from a per-market head)
PINNED_DIGEST = "fb805eab1d37d5fb17a46b672ea036642d7993aae676264167e1629133cdec13"
COUNT = 34_593


def _run(actions: int) -> tuple[Engine, Truth, list[bytes]]:
    now = [PINNED_START_US]

    def clock() -> int:
        now[0] += 1_371  # µs: every step a little later, deterministically
        return now[0]

    universe = Universe(3_000, PINNED_START_US, seed=5)
    truth = Truth(universe)
    engine = Engine(universe, truth, rate=1.0, active=300, seed=9, clock=clock, run_id=4, busy=30)
    yes_bodies: list[bytes] = []
    engine.publish = lambda event: yes_bodies.append(event.yes_body or b"-")
    for i in range(actions // 10):
        engine.step(10)
        if i % 400 == 399:  # a market settled, another listed (every other one a combo)
            engine._churn()
    return engine, truth, yes_bodies


def test_a_seeded_run_sends_the_pinned_bytes() -> None:
    _, truth, yes_bodies = _run(20_000)
    digest = hashlib.sha256()
    for event, yes_body in zip(truth.events, yes_bodies, strict=True):
        digest.update(event.to_json() + b"\n" + yes_body + b"\n")
    assert len(truth.events) == COUNT
    assert digest.hexdigest() == PINNED_DIGEST


def test_every_msg_is_orjsons_encoding_and_the_yes_leg_mirrors_it() -> None:
    _, truth, _ = _run(5_000)
    deltas = 0
    for event in truth.events:
        msg = orjson.loads(event.body)
        assert orjson.dumps(msg) == event.body
        if event.type == "orderbook_delta":
            deltas += 1
            assert (msg["side"] == "no") == (event.yes_body is not None)
            if event.yes_body is not None:
                yes_price = format_price(DOLLAR - parse_price(msg["price_dollars"]))
                assert event.yes_body == orjson.dumps({**msg, "price_dollars": yes_price})
    assert deltas > 4_000


def test_the_price_lists_follow_the_books() -> None:
    engine, truth, _ = _run(5_000)
    for ticker, state in engine._active.items():
        book = truth.books[ticker]
        assert state.yes_prices == sorted(book.yes)
        assert state.no_prices == sorted(book.no)
