"""What the real exchange does, as the simulator plays it (issue 15): combo markets only on
``multivariate_market_lifecycle``, exchange times that never go back on a subscription,
settled markets without quotes, and REST trades newest first with µs times.

The exchange runs on a frozen ``mock_clock``: the engine moves only in ``engine.step``.
"""

from __future__ import annotations

import httpx
import orjson
from sim_support import connect

from kalshi.auth import Signer, load_private_key
from kalshi.models import LifecycleEvent, Message
from kalshi.models.units import parse_rfc3339_us
from kalshi.net import RestClient
from kalshi.sim.universe import Universe
from kalshi.testing import PINNED_START_US, sim
from kalshi.wire import decode_ws


async def test_combos_are_announced_on_the_multivariate_channel_only(mock_clock: object) -> None:
    async with sim(markets=20, active=2) as ex, connect(ex) as client:
        ex.engine.pause()
        await client.until_reply(
            await client.send(
                "subscribe", {"channels": ["market_lifecycle_v2", "multivariate_market_lifecycle"]}
            )
        )
        plain = ex.add_market(series="KXBTCD")
        combo = ex.add_market(combo=True)
        ex.settle_market(combo, "yes")
        frames = [orjson.dumps(f) for f in await client.sync()]
        decoded = [
            d for d in map(decode_ws, frames) if isinstance(d, Message) and d.type != "subscribed"
        ]
        by_sid: dict[int | None, list[tuple[str, str]]] = {}
        for m in decoded:
            key = m.body.ticker if isinstance(m.body, LifecycleEvent) else "event"
            by_sid.setdefault(m.sid, []).append((m.type, key))
        assert by_sid == {
            1: [("event_lifecycle", "event"), ("market_lifecycle_v2", plain)],
            2: [
                ("event_lifecycle", "event"),
                ("multivariate_market_lifecycle", combo),
                ("multivariate_market_lifecycle", combo),
                ("multivariate_market_lifecycle", combo),
            ],
        }
        assert [m.seq for m in decoded if m.sid == 2] == [1, 2, 3, 4]
        combos = [m.body for m in decoded if m.type == "multivariate_market_lifecycle"]
        assert [b.event_type for b in combos] == ["created", "determined", "settled"]  # type: ignore[union-attr]
        assert all(b.multivariate for b in combos)  # type: ignore[union-attr]


async def test_exchange_times_never_go_back_on_a_subscription(mock_clock: object) -> None:
    async with sim(markets=40, active=6, seed=3) as ex, connect(ex) as client:
        await client.until_reply(
            await client.send(
                "subscribe",
                {
                    "channels": ["orderbook_delta", "trade"],
                    "market_tickers": ex.engine.active_tickers,
                },
            )
        )
        for _ in range(50):
            ex.engine.step(40)
            ex.engine._stamp(ex.engine._last_ms - 9)  # an earlier base time is clamped
        frames = await client.sync()
        last: dict[int, int] = {}
        checked = 0
        for frame in frames:
            msg = frame.get("msg") or {}
            if frame.get("type") in ("orderbook_delta", "trade") and "ts_ms" in msg:
                sid = frame["sid"]
                assert msg["ts_ms"] >= last.get(sid, 0), frame
                last[sid] = msg["ts_ms"]
                checked += 1
        assert checked == (
            ex.truth.events_generated["orderbook_delta"] + ex.truth.events_generated["trade"]
        )


async def test_a_markets_microsecond_times_never_go_back(mock_clock: object) -> None:
    # Outside tester, F2: 1 384 of 9 453 simulated deltas had a µs `ts` before the previous
    # delta's of their market, in the same `ts_ms`; the real capture (kalshi-gold15m) has 0
    # of 100 838 (and 24 281 equal to the previous one). The µs part was drawn per delta.
    # Closing a market at settlement stamped its deltas with the clock, not the last time
    # given, which the run loop may have put up to 9 ms ahead.
    async with sim(markets=40, active=6, seed=3) as ex, connect(ex) as client:
        tickers = ex.engine.active_tickers
        await client.until_reply(
            await client.send(
                "subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers}
            )
        )
        for _ in range(50):
            ex.engine.step(40)
        ex.engine._stamp(ex.engine._last_ms + 7)  # the run loop's times run ahead of the clock
        ex.engine.step(40)
        ex.settle_market(tickers[0], "yes")
        frames = await client.sync()
        last: dict[str, int] = {}
        same_ms = 0
        digits: set[int] = set()
        for frame in frames:
            if frame.get("type") != "orderbook_delta":
                continue
            msg = frame["msg"]
            us = parse_rfc3339_us(msg["ts"])
            # Kalshi trims the fraction's trailing zeros (F2: "…T03:45:42.00174Z")
            assert not msg["ts"].endswith(("0Z", ".Z")), frame
            digits.add(len(msg["ts"].partition(".")[2]) - 1)
            assert us // 1000 == msg["ts_ms"], frame
            previous = last.get(msg["market_ticker"], 0)
            assert us >= previous, frame
            same_ms += us // 1000 == previous // 1000
            last[msg["market_ticker"]] = us
        assert (
            sum(f.get("type") == "orderbook_delta" for f in frames)
            == (ex.truth.events_generated["orderbook_delta"])
        )
        assert same_ms > 100  # many deltas of a market share a millisecond
        assert {5, 6} <= digits  # trimmed fractions as the real deltas have them


async def test_a_settled_market_has_no_quotes_and_trades_come_newest_first(
    mock_clock: object,
) -> None:
    async with sim(markets=20, active=3, seed=4) as ex:
        ex.engine.step(400)
        ticker = ex.engine.active_tickers[0]
        ex.settle_market(ticker, "no")
        signer = Signer(ex.key_id, load_private_key(ex.private_key_pem.decode()))
        async with RestClient(ex.rest_url, signer, rate=1000) as rest:
            market = orjson.loads(await rest.get(f"/markets/{ticker}"))["market"]
            book = orjson.loads(await rest.get(f"/markets/{ticker}/orderbook"))["orderbook_fp"]
            trades = orjson.loads(await rest.get("/markets/trades", {"limit": 1000}))["trades"]
        assert (market["status"], market["yes_bid_dollars"], market["yes_ask_dollars"]) == (
            "finalized",
            "0.0000",
            "1.0000",
        )
        assert (market["no_bid_dollars"], market["no_ask_dollars"]) == ("0.0000", "1.0000")
        assert (book["yes_dollars"], book["no_dollars"]) == ([], [])
        times = [t["created_time"] for t in trades]
        assert len(times) == len(ex.truth.trades) > 10
        moments = [parse_rfc3339_us(t) for t in times]
        assert moments == sorted(moments, reverse=True)
        assert not any(t.endswith(("0Z", ".Z")) for t in times)  # trimmed, as Kalshi's


async def test_the_lifecycle_churn_lists_combos_too(mock_clock: object) -> None:
    async with sim(markets=20, active=3) as ex:
        ex.engine.pause()
        for _ in range(4):
            ex.engine._churn()  # what lifecycle_every runs
        created = [e for e in ex.truth.events if getattr(e.model, "event_type", "") == "created"]
        assert [(e.channel, e.ticker.startswith("KXMVE")) for e in created] == [
            ("market_lifecycle_v2", False),
            ("multivariate_market_lifecycle", True),
        ] * 2


async def test_a_combo_lists_its_legs(mock_clock: object) -> None:
    # kalshi-api.md §4.3: a combo (multivariate) market names the markets it combines in
    # mve_selected_legs; the simulator draws 2-4 trading markets of distinct events.
    async with sim(markets=400, active=60, seed=5, tier=None) as ex, httpx.AsyncClient() as client:
        ex.engine.pause()
        combos = [ex.engine.add_market(combo=True) for _ in range(20)]
        given = ex.engine.add_market(combo=True, legs=[(ex.engine.active_tickers[0], "no")])
        listed = {}
        for ticker in [*combos, given]:
            response = await client.get(f"{ex.rest_url}/markets/{ticker}")
            listed[ticker] = response.json()["market"]
    trading = set(ex.engine.active_tickers)
    counts = set()
    for ticker in combos:
        market = listed[ticker]
        assert market["mve_collection_ticker"] == "KXMVECROSSCATEGORY"
        legs = market["mve_selected_legs"]
        counts.add(len(legs))
        assert len({leg["event_ticker"] for leg in legs}) == len(legs)
        for leg in legs:
            assert leg["market_ticker"] in trading
            assert not leg["market_ticker"].startswith("KXMVE")
            assert leg["event_ticker"] == leg["market_ticker"].rsplit("-", 1)[0]
            assert leg["side"] in ("yes", "no")
    assert counts == {2, 3, 4}
    first = ex.engine.active_tickers[0]
    assert listed[given]["mve_selected_legs"] == [
        {"event_ticker": first.rsplit("-", 1)[0], "market_ticker": first, "side": "no"}
    ]


async def test_combo_events_are_listed_apart(mock_clock: object) -> None:
    # kalshi-api.md §4.2: GET /events excludes multivariate events; GET
    # /events/multivariate lists them (series_ticker xor collection_ticker, limit 1-200).
    async with sim(markets=40, active=20, seed=5, tier=None) as ex, httpx.AsyncClient() as client:
        ex.engine.pause()
        plain = ex.engine.add_market(series="KXHIGHNY")
        combos = [ex.engine.add_market(combo=True) for _ in range(5)]
        base = f"{ex.rest_url}/events"
        listed = (await client.get(base, params={"limit": 200})).json()["events"]
        first = (await client.get(f"{base}/multivariate", params={"limit": 3})).json()
        rest = (
            await client.get(
                f"{base}/multivariate",
                params={"cursor": first["cursor"], "with_nested_markets": "true"},
            )
        ).json()
        other = await client.get(f"{base}/multivariate", params={"collection_ticker": "KXMVEOTHER"})
        both = await client.get(
            f"{base}/multivariate",
            params={"collection_ticker": "KXMVECROSSCATEGORY", "series_ticker": "X"},
        )
    events = [e["event_ticker"] for e in listed]
    assert plain.rsplit("-", 1)[0] in events
    assert not any(e.startswith("KXMVE") for e in events)
    combo_events = [c.rsplit("-", 1)[0] for c in combos]
    assert [e["event_ticker"] for e in first["events"]] == combo_events[:3]
    assert [e["event_ticker"] for e in rest["events"]] == combo_events[3:]
    assert rest["cursor"] == ""
    assert [[m["ticker"] for m in e["markets"]] for e in rest["events"]] == [
        [c] for c in combos[3:]
    ]
    assert other.json() == {"events": [], "cursor": ""}
    assert both.status_code == 400


async def test_a_restart_never_reissues_an_id_and_a_run_id_reproduces_a_run(
    mock_clock: object,
) -> None:
    """Issue F4: several runs of one seed into one database stored each trade id up to 4
    times. Ids issued once for good are salted by the run id (default: the start time)."""
    runs = []
    for run_id in (None, None, 7, 7):
        options = {} if run_id is None else {"run_id": run_id}
        async with sim(markets=40, active=6, seed=3, **options) as ex:
            ex.engine.pause()
            ex.engine.step(300)
            added = ex.add_market(series="KXBTCD")
            info = ex.universe.get(added)
            assert info is not None
            ids = [t.trade_id for t in ex.truth.trades]
            runs.append((ids, info.event_ticker, added, info.market_id))
    first, second, seventh, again = runs
    assert len(set(first[0])) == len(first[0]) > 20
    assert not set(first[0]) & set(second[0])
    assert first[1:] != second[1:] and first[3] != second[3]
    assert seventh == again  # the same seed and run id: the same ids
    assert len(seventh[0]) == len(first[0])
    assert seventh[0][0] == "0afac9be-ed6e-4625-bed2-04893af8c35d"
    assert seventh[1:] == (
        "KXBTCD-SIM7E12A10001",
        "KXBTCD-SIM7E12A10001-N1",
        "3d31f77e-04ff-468f-be73-2277e2fe033e",
    )


def test_a_generated_market_keeps_its_id_across_dates_and_no_two_share_one() -> None:
    """A universe a day later lists 160 new tickers of 1 000 (and drops 160): before, ids
    came from the index, so 160 different tickers took ids their predecessors had."""
    day_us = 86_400_000_000
    a, b = (Universe(1000, PINNED_START_US + n * day_us, 1) for n in (0, 1))
    ids_a = {a.info(i).ticker: a.info(i).market_id for i in range(1000)}
    ids_b = {b.info(i).ticker: b.info(i).market_id for i in range(1000)}
    common = ids_a.keys() & ids_b.keys()
    assert len(common) == 840
    assert all(ids_a[t] == ids_b[t] for t in common)
    assert len(set(ids_a.values()) | set(ids_b.values())) == len(ids_a.keys() | ids_b.keys())
    assert len(ids_a.keys() | ids_b.keys()) == 1160
