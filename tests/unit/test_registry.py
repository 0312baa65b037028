"""Market registry, shards, connection layout and backoff: pure state, exact values."""

from __future__ import annotations

import random

import orjson
import pytest

from kalshi.errors import ConfigError
from kalshi.gather.registry import MarketRegistry, Shard, parse_shard
from kalshi.models.lifecycle import LifecycleEvent
from kalshi.models.market import Market
from kalshi.net import Backoff
from kalshi.wire import decode_market


def market(ticker: str, status: str = "active", event: str = "EV") -> Market:
    return Market(ticker=ticker, event_ticker=event, status=status)


def test_upsert_reports_live_and_retired_markets_and_only_changed_rows() -> None:
    reg = MarketRegistry("g1")
    seen: list[tuple[list[str], list[str]]] = []
    reg.listeners.append(lambda live, retired: seen.append((live, retired)))
    rows = reg.upsert([market("A"), market("B", "finalized"), market("C", "initialized")], 5)
    assert [r.ticker for r in rows] == ["A", "B", "C"]
    assert seen == [(["A", "C"], [])]
    assert reg.upsert([market("A")], 6) == []  # unchanged: no row, no event
    reg.upsert([market("A", "closed")], 7)
    assert seen[-1] == ([], ["A"])
    assert reg.live == {"C"}


def test_lifecycle_creates_activates_and_settles() -> None:
    reg = MarketRegistry("g1")
    seen: list[tuple[list[str], list[str]]] = []
    reg.listeners.append(lambda live, retired: seen.append((live, retired)))
    created = LifecycleEvent(ticker="N-1", event_type="created", event_ticker="N", open_ts=10)
    rows = reg.apply(created, 100)
    assert [(r.ticker, r.status, r.open_time, r.updated_at) for r in rows] == [
        ("N-1", "initialized", 10, 100)
    ]
    reg.apply(LifecycleEvent(ticker="N-1", event_type="activated"), 101)
    assert reg.markets["N-1"].status == "active"
    reg.apply(LifecycleEvent(ticker="N-1", event_type="determined", result="yes"), 102)
    assert reg.markets["N-1"].result == "yes"
    assert seen == [(["N-1"], []), ([], ["N-1"])]
    assert reg.apply(LifecycleEvent(ticker="UNKNOWN", event_type="settled"), 103) == []


def test_a_created_market_opens_at_its_open_time_without_an_event() -> None:
    """initialized -> active at open_time is implicit (kalshi-api.md §5 "Lifecycle")."""
    reg = MarketRegistry("g1")
    created = LifecycleEvent(
        ticker="N-1", event_type="created", event_ticker="N", open_ts=1_000, close_ts=9_000
    )
    reg.apply(created, 500)
    reg.upsert([Market(ticker="L-1", event_ticker="L", status="initialized", open_time=2_000)], 500)
    assert reg.unopened == {"N-1": 1_000, "L-1": 2_000}
    assert reg.open_due(999) == []
    rows = reg.open_due(1_000)
    assert [(r.ticker, r.status, r.open_time, r.updated_at) for r in rows] == [
        ("N-1", "active", 1_000, 1_000)
    ]
    assert (reg.markets["N-1"].status, reg.markets["L-1"].status) == ("active", "initialized")
    assert reg.unopened == {"L-1": 2_000}
    assert reg.open_due(1_500) == []  # once
    assert reg.status_counts() == {"active": 1, "initialized": 1}


def test_finalized_markets_are_forgotten_once_held_long_enough() -> None:
    reg = MarketRegistry("g1")
    reg.upsert([market("A"), market("B"), market("C", "finalized")], 10)
    reg.apply(LifecycleEvent(ticker="A", event_type="settled"), 20)
    reg.upsert([market("B", "closed")], 30)
    assert reg.finalized == {"A": 20, "C": 10}
    assert reg.counts == {"active": 0, "finalized": 2, "closed": 1}
    assert reg.forget(10) == []
    assert reg.forget(11) == ["C"]
    assert reg.forget(21) == ["A"]
    assert (set(reg.markets), reg.finalized, reg.live) == ({"B"}, {}, set())
    assert reg.status_counts() == {"closed": 1}
    assert reg.page(None, None, 10, None)["tracked"] == 1
    # held again only if listed again (the gatherer's listing never asks for it)
    assert [r.status for r in reg.upsert([market("A", "finalized")], 40)] == ["finalized"]
    assert reg.finalized == {"A": 40}


def test_shards_partition_by_event_and_parse_strictly() -> None:
    shards = [Shard(i, 3) for i in range(3)]
    tickers = [market(f"E{e}-M{m}", event=f"E{e}") for e in range(30) for m in range(3)]
    owners = [[s.owns(m) for s in shards].index(True) for m in tickers]
    assert all(sum(s.owns(m) for s in shards) == 1 for m in tickers)
    assert all(owners[i] == owners[i - i % 3] for i in range(len(tickers)))  # events together
    assert parse_shard("1/3") == Shard(1, 3)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_debug_page_filters_and_pages_in_ticker_order() -> None:
    reg = MarketRegistry("g1")
    reg.upsert([market(f"K-{i:02d}", "active" if i % 2 else "finalized") for i in range(10)], 1)
    page = reg.page("active", "K-", 3, None)
    assert [m["ticker"] for m in page["markets"]] == ["K-01", "K-03", "K-05"]
    page = reg.page("active", "K-", 3, page["cursor"])
    assert [m["ticker"] for m in page["markets"]] == ["K-07", "K-09"]
    assert (page["cursor"], page["total"], page["tracked"]) == (None, 5, 10)
    # total: the markets matching the filters, on every page; tracked: all of them
    reg.upsert([market(f"KXHIGHNY-{i}", "active") for i in range(3)], 2)
    reg.upsert([market("KXHIGHNYC-0", "active"), market("KXHIGHNZ-0", "active")], 2)
    page = reg.page(None, "KXHIGHNY-", 1, None)
    assert [m["ticker"] for m in page["markets"]] == ["KXHIGHNY-0"]
    assert (page["total"], page["tracked"]) == (3, 15)
    assert reg.page("finalized", None, 100, None)["total"] == 5
    assert reg.page("finalized", "KXHIGHNY", 100, None)["total"] == 0


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(7))
    caps = []
    for _ in range(6):
        caps.append(backoff.ceiling())
        delay = backoff.next()
        assert caps[-1] / 2 <= delay <= caps[-1]
    assert caps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.ceiling() == 1.0


def test_the_markets_row_keeps_the_exchanges_whole_object() -> None:
    # Strikes, rules and settlement fields are not decoded; the row keeps them anyway.
    body = (
        b'{"market":{"ticker":"KXHIGHNY-26AUG28-B81.5","event_ticker":"KXHIGHNY-26AUG28",'
        b'"status":"active","strike_type":"between","floor_strike":81,"cap_strike":82,'
        b'"custom_strike":{"City":"NY"},"expiration_value":"81.7","rules_primary":"If ...",'
        b'"settlement_value_dollars":"1.0000","yes_bid_dollars":"0.4200"}}'
    )
    reg = MarketRegistry("g1")
    (row,) = reg.upsert([decode_market(body)], 5)
    assert orjson.loads(row.payload) == orjson.loads(body)["market"]
    assert (row.ticker, row.status, row.updated_at) == ("KXHIGHNY-26AUG28-B81.5", "active", 5)
    # Kept compressed, not in the Market: a re-list of the same object writes nothing, a
    # change only in fields we do not decode writes a row, and a lifecycle change writes
    # the exchange's object as last received beside the new status.
    assert reg.markets[row.ticker].raw == ""
    assert reg.upsert([decode_market(body)], 6) == []
    changed = body.replace(b'"expiration_value":"81.7"', b'"expiration_value":"81.9"')
    (row,) = reg.upsert([decode_market(changed)], 7)
    assert orjson.loads(row.payload)["expiration_value"] == "81.9"
    settled = LifecycleEvent(ticker=row.ticker, event_type="settled", settled_ts=8)
    (row,) = reg.apply(settled, 8)
    assert (row.status, row.updated_at) == ("finalized", 8)
    assert orjson.loads(row.payload) == orjson.loads(changed)["market"]
    assert reg.apply(settled, 9) == []
