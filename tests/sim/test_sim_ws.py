"""The WebSocket protocol of the simulator, driven by a plain client (reference §1.3, §2, §3).

The exchange runs on a frozen ``mock_clock``: the engine only moves when a test calls
``engine.step``, so every count below is exact.
"""

from __future__ import annotations

import pytest
import trio
from sim_support import Rebuilt, Rejected, connect
from wsproto.events import Ping

from kalshi.clock import system_wall_us
from kalshi.models import (
    ErrorReply,
    EventLifecycle,
    LifecycleEvent,
    Message,
    OkReply,
    Subscribed,
    SubscriptionList,
    Ticker,
    Trade,
)
from kalshi.testing import signed_headers, sim
from kalshi.wire import decode_ws


async def test_subscribe_snapshot_then_deltas_rebuild_engine_books(mock_clock: object) -> None:
    async with sim(markets=40, active=4, seed=7) as ex, connect(ex) as client:
        tickers = ex.engine.active_tickers
        ident = await client.send(
            "subscribe", {"channels": ["orderbook_delta", "trade"], "market_tickers": tickers}
        )
        rebuilt = Rebuilt()
        frames = await client.until_reply(ident)
        frames += await client.sync()
        for frame in frames:
            rebuilt.feed(frame)
        ex.engine.step(300)
        for frame in await client.sync():
            rebuilt.feed(frame)
        for ticker in tickers:
            assert rebuilt.books[ticker] == ex.truth.book(ticker)
        trades = [m.body for m in rebuilt.messages if isinstance(m.body, Trade)]
        assert trades == ex.truth.trades
        assert rebuilt.last_seq[1] == 4 + ex.truth.events_generated["orderbook_delta"]
        assert rebuilt.last_seq[2] == ex.truth.events_generated["trade"]


async def test_subscribed_one_per_channel_and_list(mock_clock: object) -> None:
    async with sim(markets=20, active=2) as ex, connect(ex) as client:
        t = ex.engine.active_tickers
        ident = await client.send(
            "subscribe", {"channels": ["orderbook_delta", "ticker", "trade"], "market_tickers": t}
        )
        frames = [f for f in await client.until_reply(ident)] + await client.sync()
        kinds = [(f["type"], f.get("id"), f.get("sid"), f.get("seq")) for f in frames]
        assert kinds == [
            ("subscribed", ident, None, None),
            ("orderbook_snapshot", None, 1, 1),
            ("orderbook_snapshot", None, 1, 2),
            ("subscribed", ident, None, None),
            ("subscribed", ident, None, None),
        ]
        assert [decode_ws(_b(f)).body for f in frames if f["type"] == "subscribed"] == [
            Subscribed("orderbook_delta", 1),
            Subscribed("ticker", 2),
            Subscribed("trade", 3),
        ]
        listing = await client.until_reply(await client.send("list_subscriptions"))
        decoded = decode_ws(_b(listing[-1]))
        assert isinstance(decoded, Message)
        assert decoded.body == SubscriptionList(
            tuple(
                type(decoded.body.subscriptions[0])(c, s)
                for c, s in (("orderbook_delta", 1), ("ticker", 2), ("trade", 3))
            )
        )


def _b(frame: dict[str, object]) -> bytes:
    import orjson

    return orjson.dumps(frame)


@pytest.mark.parametrize(
    ("cmd", "params", "code"),
    [
        ("subscribe", None, 2),
        ("subscribe", {}, 3),
        ("subscribe", {"channels": []}, 3),
        ("subscribe", {"channels": ["ticker_v2"]}, 8),
        ("subscribe", {"channels": ["multivariate"]}, 8),
        ("subscribe", {"channels": ["orderbook_delta"]}, 14),
        ("subscribe", {"channels": ["trade"], "market_ticker": "A", "market_tickers": ["B"]}, 11),
        ("unsubscribe", {}, 4),
        ("unsubscribe", {"sids": [99]}, 7),
        ("update_subscription", {"action": "add_markets", "market_tickers": ["A"]}, 12),
        ("update_subscription", {"sid": 1, "sids": [1], "action": "add_markets"}, 12),
        (
            "update_subscription",
            {"sids": [99], "action": "add_markets", "market_tickers": ["A"]},
            7,
        ),
        ("fly", {}, 5),
    ],
)
async def test_command_errors(
    mock_clock: object, cmd: str, params: dict[str, object] | None, code: int
) -> None:
    async with sim(markets=10, active=1) as ex, connect(ex) as client:
        ident = await client.send(cmd, params)
        frame = (await client.until_reply(ident))[-1]
        decoded = decode_ws(_b(frame))
        assert isinstance(decoded, Message) and isinstance(decoded.body, ErrorReply)
        assert (decoded.id, decoded.body.code) == (ident, code)
        assert "sid" not in frame


async def test_not_json_is_error_1(mock_clock: object) -> None:
    async with sim(markets=10, active=1) as ex, connect(ex) as client:
        await client.send_text("{nope")
        assert await client.text() == {
            "type": "error",
            "msg": {"code": 1, "msg": "Unable to process message"},
        }


async def test_update_subscription_actions_and_seq(mock_clock: object) -> None:
    async with sim(markets=30, active=3) as ex, connect(ex) as client:
        a, b, c = ex.engine.active_tickers
        await client.until_reply(
            await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a]})
        )
        await client.sync()
        add = await client.send(
            "update_subscription", {"sids": [1], "market_tickers": [b, c], "action": "add_markets"}
        )
        frames = await client.until_reply(add) + await client.sync()
        assert [(f["type"], f.get("seq")) for f in frames] == [
            ("ok", 2),
            ("orderbook_snapshot", 3),
            ("orderbook_snapshot", 4),
        ]
        assert decode_ws(_b(frames[0])).body == OkReply(tuple(sorted((a, b, c))))
        delete = await client.send(
            "update_subscription", {"sid": 1, "market_tickers": [a], "action": "delete_markets"}
        )
        ok = (await client.until_reply(delete))[-1]
        assert ok["seq"] == 5 and ok["msg"] == {"market_tickers": sorted((b, c))}
        snap = await client.send(
            "update_subscription", {"sids": [1], "market_tickers": [c], "action": "get_snapshot"}
        )
        await client.send("list_subscriptions")
        frame = await client.text()
        assert (frame["type"], frame["id"], frame["seq"]) == ("orderbook_snapshot", snap, 6)
        await client.text()  # the list reply
        await client.until_reply(await client.send("subscribe", {"channels": ["trade"]}))
        bad = await client.send(
            "update_subscription", {"sids": [2], "market_tickers": [a], "action": "get_snapshot"}
        )
        error = (await client.until_reply(bad))[-1]
        assert error == {
            "type": "error", "id": bad, "sid": 2, "seq": 1,
            "msg": {"code": 13, "msg": "Unsupported action"},
        }  # fmt: skip
        none = await client.send("update_subscription", {"sids": [1], "market_tickers": [a]})
        assert (await client.until_reply(none))[-1]["msg"]["code"] == 15
        unsub = await client.send("unsubscribe", {"sids": [1, 2]})
        await client.send("list_subscriptions")
        frames = [await client.text() for _ in range(3)]
        assert [(f["type"], f["sid"], f["seq"], f["id"]) for f in frames[:2]] == [
            ("unsubscribed", 1, 8, unsub),
            ("unsubscribed", 2, 2, unsub),
        ]
        assert frames[2]["msg"] == []


async def test_resubscribe_adds_markets_to_the_same_sid(mock_clock: object) -> None:
    async with sim(markets=20, active=2) as ex, connect(ex) as client:
        a, b = ex.engine.active_tickers
        await client.until_reply(
            await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a]})
        )
        await client.sync()
        again = await client.send(
            "subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a, b]}
        )
        frames = await client.until_reply(again) + await client.sync()
        assert [(f["type"], f["sid"], f["seq"]) for f in frames] == [
            ("ok", 1, 2),
            ("orderbook_snapshot", 1, 3),
        ]
        assert frames[0]["msg"] == {"market_tickers": sorted((a, b))}


async def test_ticker_and_lifecycle_channels_decode(mock_clock: object) -> None:
    async with sim(markets=20, active=2) as ex, connect(ex) as client:
        await client.until_reply(
            await client.send("subscribe", {"channels": ["ticker", "market_lifecycle_v2"]})
        )
        ex.engine.step(50)
        new = ex.add_market(series="KXBTCD")
        ex.settle_market(new, "no")
        frames = await client.sync()
        decoded = [decode_ws(_b(f)) for f in frames]
        assert all(isinstance(d, Message) for d in decoded)
        bodies = [d.body for d in decoded if isinstance(d, Message)]
        tickers = [b for b in bodies if isinstance(b, Ticker)]
        assert len(tickers) == ex.truth.events_generated["ticker"]
        assert tickers == [e.model for e in ex.truth.events if e.type == "ticker"]
        life = [b for b in bodies if isinstance(b, LifecycleEvent | EventLifecycle)]
        assert life == ex.truth.lifecycle
        assert [type(x).__name__ for x in life] == ["EventLifecycle", "LifecycleEvent",
                                                    "LifecycleEvent", "LifecycleEvent"]  # fmt: skip
        assert [x.event_type for x in life[1:]] == ["created", "determined", "settled"]  # type: ignore[union-attr]
        assert ex.truth.markets[new].status == "finalized"
        seqs = [d.seq for d in decoded if isinstance(d, Message) and d.sid == 2 and d.seq]
        assert seqs == [1, 2, 3, 4]


async def test_heartbeat_every_ten_seconds(autojump_clock: object) -> None:
    async with sim(markets=10, active=1) as ex:
        ex.engine.pause()
        async with connect(ex, memory=True) as client:
            start = trio.current_time()
            kind, payload = await client.recv()
            assert (kind, payload) == ("ping", b"heartbeat")
            assert trio.current_time() - start == pytest.approx(10.0)
            assert await client.recv() == ("ping", b"heartbeat")
            assert trio.current_time() - start == pytest.approx(20.0)


async def test_a_ping_is_answered_with_an_empty_pong(autojump_clock: object) -> None:
    """kalshi-api.md §2.5: the server pongs with an empty payload, whatever the
    ping carried."""
    async with sim(markets=10, active=1) as ex:
        ex.engine.pause()
        async with connect(ex, memory=True) as client:
            await client.stream.send_all(client.ws.send(Ping(b"are you there")))
            assert await client.recv() == ("pong", b"")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("bad_signature", "invalid signature"),
        ("old_timestamp", "timestamp outside the allowed window"),
        ("missing_key", "missing header KALSHI-ACCESS-KEY"),
        ("unknown_key", "unknown API key"),
        (
            "no_headers",
            "missing header KALSHI-ACCESS-KEY, KALSHI-ACCESS-TIMESTAMP, KALSHI-ACCESS-SIGNATURE",
        ),
    ],
)
async def test_handshake_rejections(change: str, problem: str) -> None:
    async with sim(markets=10, active=1) as ex:
        headers = signed_headers(ex)
        if change == "bad_signature":
            headers["KALSHI-ACCESS-SIGNATURE"] = signed_headers(ex, path="/trade-api/v2/markets")[
                "KALSHI-ACCESS-SIGNATURE"
            ]
        elif change == "old_timestamp":
            headers = signed_headers(ex, now_ms=system_wall_us() // 1000 - 60_000)
        elif change == "missing_key":
            del headers["KALSHI-ACCESS-KEY"]
        elif change == "unknown_key":
            headers["KALSHI-ACCESS-KEY"] = "00000000-0000-4000-8000-000000000000"
        else:
            headers = {}
        with pytest.raises(Rejected) as caught:
            async with connect(ex, headers):
                pass
        assert caught.value.status == 401
        assert caught.value.body == (
            b'{"error":{"code":"authentication_error","message":"' + problem.encode() + b'"}}'
        )
        assert ex.sessions == set()


async def test_skip_ticker_ack_leaves_the_market_list_out_of_every_ok(mock_clock: object) -> None:
    """kalshi-api.md §2.2: with ``skip_ticker_ack`` an ``ok`` reply omits the subscription's
    market list (which otherwise grows with every market added)."""
    async with sim(markets=30, active=3) as ex, connect(ex) as client:
        a, b, c = ex.engine.active_tickers
        sub = await client.send(
            "subscribe",
            {"channels": ["orderbook_delta"], "market_tickers": [a], "skip_ticker_ack": True},
        )
        await client.until_reply(sub)
        await client.sync()
        add = await client.send(
            "update_subscription", {"sids": [1], "market_tickers": [b, c], "action": "add_markets"}
        )
        ok = (await client.until_reply(add))[-1]
        assert (ok["type"], ok["sid"], ok["seq"], ok["msg"]) == ("ok", 1, 2, {})
        await client.sync()
        delete = await client.send(
            "update_subscription", {"sid": 1, "market_tickers": [a], "action": "delete_markets"}
        )
        ok = (await client.until_reply(delete))[-1]
        assert (ok["type"], ok["seq"], ok["msg"]) == ("ok", 5, {})
        again = await client.send(
            "subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a]}
        )
        ok = (await client.until_reply(again))[-1]
        assert (ok["type"], ok["msg"]) == ("ok", {})


async def test_overflowing_whole_exchange_subscribers_end_cleanly(mock_clock: object) -> None:
    """Error 25 on a whole-exchange subscription removes it while the broker is fanning a
    message out (it once crashed the simulator: the set changed during iteration); each
    overflowing subscription gets exactly one error 25 and the simulator keeps serving."""
    async with (
        sim(markets=20, active=4, seed=3, buffer_limit=2_000) as ex,
        connect(ex) as first,
        connect(ex) as second,
    ):
        for client in (first, second):
            await client.until_reply(await client.send("subscribe", {"channels": ["trade"]}))
        ex.engine.step(400)  # the outboxes fill synchronously: nobody writes while it runs
        assert ex.truth.events_generated["trade"] > 20
        for client in (first, second):
            frames = await client.sync()
            errors = [(f["sid"], f["msg"]["code"]) for f in frames if f["type"] == "error"]
            assert errors == [(1, 25)]
        assert ex.truth.undelivered["overflow"] == 2
        again = await first.send("subscribe", {"channels": ["trade"]})
        assert (await first.until_reply(again))[-1]["msg"] == {"channel": "trade", "sid": 2}
