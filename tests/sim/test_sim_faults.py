"""Each fault does what it says and is counted exactly; blast mode keeps seq and truth."""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_support import Client, Rebuilt, connect

from kalshi.errors import ConfigError
from kalshi.models import BookSnapshot, Invalid, Message, Unrecognized
from kalshi.sim import FaultPlan
from kalshi.sim.faults import FaultStep
from kalshi.testing import sim
from kalshi.wire import decode_ws


async def _subscribed(ex: object, client: Client) -> None:
    tickers = ex.engine.active_tickers  # type: ignore[attr-defined]
    await client.until_reply(
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers})
    )
    await client.sync()


async def test_skip_and_repeat_seq(mock_clock: object) -> None:
    async with sim(markets=10, active=1) as ex, connect(ex) as client:
        await _subscribed(ex, client)  # snapshot = seq 1
        ex.faults.skip_seq(3)
        ex.engine.step(1)
        ex.faults.repeat_seq(2)
        ex.engine.step(1)
        frames = [f for f in await client.sync() if f["type"] == "orderbook_delta"]
        seqs = [f["seq"] for f in frames]
        deltas = ex.truth.events_generated["orderbook_delta"]
        assert seqs[0] == 5  # 2, 3, 4 skipped
        assert len(seqs) == deltas + 2
        assert sorted(set(seqs)) == list(range(5, 5 + deltas))
        repeated = [s for s in set(seqs) if seqs.count(s) > 1]
        assert len(repeated) == 1 and seqs.count(repeated[0]) == 3
        assert ex.truth.faults_injected == {"skip_seq": 1, "repeat_seq": 2}


async def test_malformed_frames(mock_clock: object) -> None:
    async with sim(markets=10, active=1) as ex, connect(ex) as client:
        for kind in ("json", "truncated", "unknown_type", "wrong_type"):
            assert ex.faults.send_malformed(kind) == 1
        raw = []
        for _ in range(4):
            kind, value = await client.recv()
            raw.append(decode_ws(value))
        assert [type(d) for d in raw] == [Invalid, Invalid, Unrecognized, Invalid]
        assert "price_dollars" in raw[3].error  # type: ignore[union-attr]
        assert ex.truth.faults_injected == {"malformed": 4}


async def test_malformed_frames_carry_the_sid_of_their_channel(mock_clock: object) -> None:
    async with sim(markets=10, active=1) as ex, connect(ex) as client:
        ex.engine.pause()
        await client.send("subscribe", {"channels": ["ticker", "trade"]})
        for _ in range(2):
            assert (await client.recv())[0] == "text"
        for kind in ("json", "truncated", "wrong_type"):
            assert ex.faults.send_malformed(kind) == 1
        raw = [(await client.recv())[1] for _ in range(3)]
        sids = [int(text.split('"sid":')[1].split(",")[0]) for text in raw]
        assert sids == [2, 1, 1]  # trade's sid, then ticker's twice


@pytest.mark.parametrize("abrupt", [False, True])
async def test_drop_connections(mock_clock: object, abrupt: bool) -> None:
    async with sim(markets=10, active=1) as ex, connect(ex) as client:
        await client.sync()
        assert ex.faults.drop_connections(abrupt=abrupt) == 1
        kind, value = await client.recv()
        if abrupt:
            assert kind in ("reset", "eof")
        else:
            assert (kind, value) == ("close", 1001)
        assert ex.truth.faults_injected == {"drop_abrupt" if abrupt else "drop": 1}


async def test_go_silent_then_resume_without_loss(autojump_clock: object) -> None:
    async with sim(markets=10, active=1) as ex:
        ex.engine.pause()
        async with connect(ex, memory=True) as client:
            await _subscribed(ex, client)
            ex.faults.go_silent(30.0)
            start = trio.current_time()
            ex.engine.step(20)
            kind, value = await client.recv()
            while kind == "ping":  # the one due at 30 s may come first; those at 10 s, 20 s never
                assert trio.current_time() - start == pytest.approx(30.0)
                kind, value = await client.recv()
            assert kind == "text"
            assert trio.current_time() - start == pytest.approx(30.0)
            frames = [orjson.loads(value), *await client.sync()]
            deltas = [f["seq"] for f in frames if f["type"] == "orderbook_delta"]
            assert deltas == list(range(2, 2 + ex.truth.events_generated["orderbook_delta"]))
            assert ex.truth.faults_injected == {"silent": 1}


async def test_delay_holds_data_but_not_pings(autojump_clock: object) -> None:
    async with sim(markets=10, active=1) as ex:
        ex.engine.pause()
        async with connect(ex, memory=True) as client:
            await _subscribed(ex, client)
            ex.faults.delay(15.0)
            start = trio.current_time()
            ex.engine.step(1)
            assert await client.recv() == ("ping", b"heartbeat")
            assert trio.current_time() - start == pytest.approx(10.0)
            frame = await client.text()
            assert trio.current_time() - start == pytest.approx(15.0)
            assert frame["seq"] == 2
            assert ex.truth.faults_injected == {"delay": 1}


async def test_rest_faults_and_refusal(mock_clock: object) -> None:
    async with (
        sim(markets=10, active=1, tier=None) as ex,
        httpx.AsyncClient(base_url=ex.rest_url) as c,
    ):
        ex.faults.rest_429(5.0)
        assert [(await c.get("/exchange/status")).status_code for _ in range(3)] == [429] * 3
        mock_clock.jump(5.0)  # type: ignore[attr-defined]
        ex.faults.rest_5xx(1.0)
        assert (await c.get("/exchange/status")).status_code == 503
        mock_clock.jump(1.0)  # type: ignore[attr-defined]
        assert (await c.get("/exchange/status")).status_code == 200
        ex.faults.refuse_connections(2.0)
        with pytest.raises(Exception):  # noqa: B017  # the connection is reset
            async with connect(ex):
                pass
        mock_clock.jump(2.0)  # type: ignore[attr-defined]
        async with connect(ex):
            pass
        assert ex.truth.faults_injected == {"rest429": 3, "rest5xx": 1, "refuse": 1}


def test_fault_plan_grammar() -> None:
    plan = FaultPlan.parse(
        "drop=every:5s,silent=at:10s:3s,skip_seq=every:7s,malformed=every:500ms,rest429=at:1m:5s,repeat_seq=at:2s:4"
        ",close=at:3s,close=at:4s:4003"
    )
    assert plan.steps == (
        FaultStep("drop", 5.0, 5.0, 0.0),
        FaultStep("silent", 10.0, None, 3.0),
        FaultStep("skip_seq", 7.0, 7.0, 1.0),
        FaultStep("malformed", 0.5, 0.5, 0.0),
        FaultStep("rest429", 60.0, None, 5.0),
        FaultStep("repeat_seq", 2.0, None, 4.0),
        FaultStep("close", 3.0, None, 1008.0),
        FaultStep("close", 4.0, None, 4003.0),
    )
    for bad in (
        "drop",
        "drop=at:5",
        "nap=at:1s",
        "drop=at:1s:2s",
        "skip_seq=at:1s:x",
        "drop=every:0s",
    ):
        with pytest.raises(ConfigError):
            FaultPlan.parse(bad)


async def test_fault_plan_runs_on_schedule(autojump_clock: object) -> None:
    plan = FaultPlan.parse("malformed_json=every:2s,drop=at:7s")
    async with sim(markets=10, active=1, faults=plan) as ex:
        ex.engine.pause()
        async with connect(ex, memory=True) as client:
            start = trio.current_time()
            got = []
            while True:
                kind, _value = await client.recv()
                got.append((kind, round(trio.current_time() - start, 3)))
                if kind == "close":
                    break
            assert got == [("text", 2.0), ("text", 4.0), ("text", 6.0), ("close", 7.0)]
            assert ex.truth.faults_injected == {"malformed": 3, "drop": 1}


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**20), steps=st.integers(1, 300))
async def test_snapshot_then_deltas_rebuild_exactly(
    mock_clock: object, seed: int, steps: int
) -> None:
    async with sim(markets=30, active=3, seed=seed) as ex, connect(ex) as client:
        rebuilt = Rebuilt()
        half = steps // 2
        ex.engine.step(half)  # books move before the snapshot too
        tickers = ex.engine.active_tickers
        ident = await client.send(
            "subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers}
        )
        frames = await client.until_reply(ident)
        ex.engine.step(steps - half)
        for frame in frames + await client.sync():
            rebuilt.feed(frame)
        for ticker in ex.engine.active_tickers:
            assert rebuilt.books[ticker] == ex.truth.book(ticker)
        resnap = await client.send(
            "update_subscription",
            {"sids": [1], "market_tickers": ex.engine.active_tickers, "action": "get_snapshot"},
        )
        snaps = [f for f in await client.sync() if f.get("id") == resnap]
        assert len(snaps) == 3
        for frame in snaps:
            decoded = decode_ws(orjson.dumps(frame))
            assert isinstance(decoded, Message) and isinstance(decoded.body, BookSnapshot)
            assert decoded.body == ex.truth.book(decoded.body.ticker).snapshot(
                decoded.body.market_id
            )


async def test_blast_mode_streams_pregenerated_truth(mock_clock: object) -> None:
    async with sim(markets=20, active=4, blast=True, blast_events=3000) as ex:
        assert ex.truth.events_generated.total() >= 3000
        async with connect(ex) as client:
            tickers = ex.engine.active_tickers
            ident = await client.send(
                "subscribe", {"channels": ["orderbook_delta", "trade"], "market_tickers": tickers}
            )
            rebuilt = Rebuilt()
            for frame in await client.until_reply(ident):
                rebuilt.feed(frame)
            generated = ex.truth.events_generated
            want = generated["orderbook_delta"] + generated["trade"]
            while sum(1 for m in rebuilt.messages if m.type in ("orderbook_delta", "trade")) < want:
                rebuilt.feed(await client.text())
            assert rebuilt.last_seq == {1: 4 + generated["orderbook_delta"], 2: generated["trade"]}
            for ticker in tickers:
                assert rebuilt.books[ticker] == ex.truth.book(ticker)
            assert [m.body for m in rebuilt.messages if m.type == "trade"] == ex.truth.trades
