"""The WebSocket decoder against literal frames from the protocol reference."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshi.models import (
    BookDelta,
    BookSnapshot,
    ErrorReply,
    EventFeeUpdate,
    EventLifecycle,
    Invalid,
    LifecycleEvent,
    Message,
    OkReply,
    PriceRange,
    Side,
    Subscribed,
    SubscriptionInfo,
    SubscriptionList,
    Ticker,
    Trade,
    Unrecognized,
    Unsubscribed,
)
from kalshi.wire import (
    decode_ws,
    encode_command,
    list_subscriptions_cmd,
    subscribe_cmd,
    unsubscribe_cmd,
    update_subscription_cmd,
)
from tests.strategies import frame_types, json_values, messages

FRAMES = Path(__file__).parent.parent / "data" / "frames"
MARKET_ID = "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1"


def frame(name: str) -> bytes:
    return (FRAMES / f"{name}.json").read_bytes().strip()


def decoded(name: str) -> Message:
    result = decode_ws(frame(name))
    assert isinstance(result, Message), result
    return result


def test_subscribed_takes_sid_from_msg() -> None:
    assert decoded("subscribed") == Message(
        "subscribed", Subscribed("orderbook_delta", 1), sid=1, seq=None, id=1
    )


def test_unsubscribed_and_ok_consume_seq() -> None:
    assert decoded("unsubscribed") == Message("unsubscribed", Unsubscribed(), 2, 7, 124)
    assert decoded("ok_update") == Message(
        "ok", OkReply(("M-1", "M-2", "M-3")), sid=456, seq=222, id=124
    )


def test_list_subscriptions_reply_is_an_array() -> None:
    assert decoded("ok_list").body == SubscriptionList(
        (SubscriptionInfo("orderbook_delta", 1), SubscriptionInfo("ticker", 2))
    )


def test_errors() -> None:
    assert decoded("error") == Message(
        "error", ErrorReply(7, "Unknown subscription ID"), None, None, 123
    )
    scoped = decoded("error_scoped")
    assert (scoped.sid, scoped.seq, scoped.body) == (3, 2, ErrorReply(13, "Unsupported action"))


def test_orderbook_snapshot_current_and_legacy_shapes_agree() -> None:
    expected = BookSnapshot(
        "FED-23DEC-T3.00",
        MARKET_ID,
        yes=((8000, 30000), (22000, 33300)),
        no=((54000, 2000), (56000, 14600)),
    )
    assert decoded("orderbook_snapshot") == Message("orderbook_snapshot", expected, 2, 2)
    assert decoded("orderbook_snapshot_legacy").body == expected


def test_snapshot_sides_omitted_when_empty() -> None:
    assert decoded("orderbook_snapshot_empty").body == BookSnapshot(
        "FED-23DEC-T3.00", MARKET_ID, (), ()
    )


def test_orderbook_delta() -> None:
    expected = BookDelta(
        "FED-23DEC-T3.00", MARKET_ID, Side.YES, 96000, -5400, 1_669_149_841_000_000
    )
    assert decoded("orderbook_delta") == Message("orderbook_delta", expected, 2, 3)
    assert decoded("orderbook_delta_legacy").body == expected


def test_ticker() -> None:
    assert decoded("ticker") == Message(
        "ticker",
        Ticker(
            ticker="FED-23DEC-T3.00",
            market_id=MARKET_ID,
            price=48000,
            yes_bid=45000,
            yes_ask=53000,
            volume=3389600,
            open_interest=2042200,
            dollar_volume=16948,
            dollar_open_interest=10211,
            yes_bid_size=30000,
            yes_ask_size=15000,
            last_trade_size=2500,
            exchange_ts=1_669_149_841_000_000,
        ),
        sid=11,
    )


def test_ticker_quirks_empty_price_and_unknown_keys() -> None:
    body = decoded("ticker_quirks").body
    assert isinstance(body, Ticker)
    assert (body.price, body.last_trade_size, body.exchange_ts) == (
        None,
        None,
        1_669_149_841_000_000,
    )


def test_trades_current_demo_and_legacy() -> None:
    expected = Trade(
        "d91bc706-ee49-470d-82d8-11418bda6fed",
        "HIGHNY-22DEC23-B53.5",
        yes_price=36000,
        no_price=64000,
        count=13600,
        taker_side=Side.NO,
        exchange_ts=1_669_149_841_000_000,
        is_block_trade=False,
    )
    assert decoded("trade") == Message("trade", expected, 11, 2)
    assert decoded("trade_legacy").body == expected
    demo = decoded("trade_demo").body
    assert demo == Trade(
        "879217f6-553e-7222-2304-fb05558d63d0",
        "KXMAXSHARDINGTEST-26AUG2818-T57399.99",
        80000,
        20000,
        200,
        Side.NO,
        1_786_956_599_391_000,
    )


def test_lifecycle_messages() -> None:
    created = decoded("market_lifecycle_created")
    assert (created.sid, created.seq) == (13, 3)
    assert created.body == LifecycleEvent(
        ticker="INXD-23SEP14-B4487",
        event_type="created",
        event_ticker="INXD-23SEP14",
        open_ts=1_694_635_200_000_000,
        close_ts=1_694_721_600_000_000,
        exchange_index=0,
        price_level_structure="linear_cent",
        title="S&P 500 closes up by 0.02% or more",
    )
    assert decoded("market_lifecycle_pls").body == LifecycleEvent(
        ticker="INXD-23SEP14-B4487",
        event_type="price_level_structure_updated",
        price_level_structure="deci_cent",
        price_ranges=(PriceRange(0, 100000, 100),),
    )
    assert decoded("market_lifecycle_determined").body == LifecycleEvent(
        ticker="INXD-23SEP14-B4487",
        event_type="determined",
        determination_ts=1_694_721_700_000_000,
        result="yes",
        settlement_value=100000,
    )
    assert decoded("event_lifecycle").body == EventLifecycle(
        event_ticker="KXQUICKSETTLE-26JAN25H2150",
        series_ticker="KXQUICKSETTLE",
        title="What will 1+1 equal on Jan 25 at 21:50?",
        subtitle="Jan 25 at 21:50",
        collateral_return_type="MECNET",
        exchange_index=0,
    )
    assert decoded("event_fee_update").body == EventFeeUpdate(
        "KXQUICKSETTLE-26JAN25H2150", "flat", "0.5"
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"msg":{}}', "missing type"),
        (b'{"type":"trade","sid":"1","msg":{}}', "trade: sid: expected an integer, got str"),
        (b'{"type":"orderbook_delta","sid":1,"seq":2}', "orderbook_delta: missing msg"),
        (
            b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"A",'
            b'"price_dollars":"0.5","delta_fp":"1.00"}}',
            "orderbook_delta: missing side",
        ),
        (
            b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"A","side":"yes",'
            b'"price_dollars":"0.500001","delta_fp":"1.00"}}',
            "orderbook_delta: price_dollars: price: '0.500001' has more than 5 decimal places",
        ),
        (
            b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"A","side":"yes",'
            b'"price_dollars":"1.2000","delta_fp":"1.00","ts_ms":1}}',
            "orderbook_delta: price_dollars: price: '1.2000' is outside 0 to 1 dollars",
        ),
        (
            b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"A","side":"yes",'
            b'"market_id":"m","price_dollars":"-0.1000","delta_fp":"1.00","ts_ms":1}}',
            "orderbook_delta: price_dollars: price: '-0.1000' is outside 0 to 1 dollars",
        ),
        (
            b'{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"A",'
            b'"market_id":"m","yes_dollars_fp":[["1.0100","5.00"]]}}',
            "orderbook_snapshot: yes_dollars_fp[0]: price: '1.0100' is outside 0 to 1 dollars",
        ),
        (
            b'{"type":"trade","sid":1,"seq":1,"msg":{"trade_id":"t","market_ticker":"A",'
            b'"yes_price_dollars":"1.5000","count_fp":"1.00","taker_side":"yes","ts_ms":1}}',
            "trade: yes_price_dollars: price: '1.5000' is outside 0 to 1 dollars",
        ),
        (
            b'{"type":"ticker","sid":1,"seq":1,"msg":{"market_ticker":"A","market_id":"m",'
            b'"price_dollars":"0.5000","yes_bid_dollars":"0.4000","yes_ask_dollars":"2.0000",'
            b'"ts_ms":1}}',
            "ticker: yes_ask_dollars: price: '2.0000' is outside 0 to 1 dollars",
        ),
        (
            b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"A","side":"yes",'
            b'"price_dollars":0.5,"delta_fp":"1.00"}}',
            "orderbook_delta: price_dollars: price: expected a decimal string, got float",
        ),
        (
            b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"A","side":"yes",'
            b'"price_dollars":"0.5","delta_fp":"1.001"}}',
            "orderbook_delta: delta_fp: size: '1.001' has more than 2 decimal places",
        ),
        (
            b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"A","side":"up",'
            b'"price_dollars":"0.5","delta_fp":"1.00"}}',
            "orderbook_delta: side: expected 'yes' or 'no', got 'up'",
        ),
        (
            b'{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"A",'
            b'"yes_dollars_fp":[["0.5"]]}}',
            "orderbook_snapshot: yes_dollars_fp[0]: expected a [price, size] pair",
        ),
        (
            b'{"type":"trade","sid":1,"seq":1,"msg":{"trade_id":"t","market_ticker":"A",'
            b'"yes_price_dollars":"0.5","count_fp":"1.00","taker_side":"yes"}}',
            "trade: missing ts_ms",
        ),
    ],
)
def test_invalid_frames_keep_raw_bytes_and_say_why(raw: bytes, error: str) -> None:
    result = decode_ws(raw)
    assert isinstance(result, Invalid)
    assert result.raw == raw
    if error == "not JSON":
        assert result.error.startswith("not JSON: unexpected character")
    else:
        assert result.error == error


def test_unknown_type_is_unrecognized() -> None:
    raw = b'{"type":"ticker_v2","sid":1,"msg":{"market_ticker":"A","ts":1}}'
    assert decode_ws(raw) == Unrecognized(raw, "ticker_v2")


def test_str_input_is_accepted() -> None:
    assert decode_ws(frame("subscribed").decode()) == decoded("subscribed")


@given(st.binary(max_size=200))
def test_decoder_never_raises_on_garbage(raw: bytes) -> None:
    assert isinstance(decode_ws(raw), Message | Invalid | Unrecognized)


@given(frame_types, messages, json_values)
def test_decoder_never_raises_on_hostile_fields(kind: str, msg: dict, sid: object) -> None:
    raw = json.dumps({"type": kind, "sid": sid, "seq": 1, "msg": msg}).encode()
    assert isinstance(decode_ws(raw), Message | Invalid | Unrecognized)


def test_commands_encode_as_the_reference_shows() -> None:
    assert orjson.loads(
        encode_command(subscribe_cmd(1, ["orderbook_delta", "ticker"], ["FED-23DEC-T3.00"]))
    ) == {
        "id": 1,
        "cmd": "subscribe",
        "params": {
            "channels": ["orderbook_delta", "ticker"],
            "market_tickers": ["FED-23DEC-T3.00"],
        },
    }
    assert orjson.loads(encode_command(unsubscribe_cmd(124, [1, 2]))) == {
        "id": 124,
        "cmd": "unsubscribe",
        "params": {"sids": [1, 2]},
    }
    assert orjson.loads(
        encode_command(update_subscription_cmd(127, 456, "get_snapshot", ["M-1"]))
    ) == {
        "id": 127,
        "cmd": "update_subscription",
        "params": {"sids": [456], "market_tickers": ["M-1"], "action": "get_snapshot"},
    }
    assert encode_command(list_subscriptions_cmd(3)) == b'{"id":3,"cmd":"list_subscriptions"}'
    with pytest.raises(ValueError, match="unknown update_subscription action"):
        update_subscription_cmd(1, 1, "replace", [])


def test_a_delta_keeps_the_microseconds_of_its_ts() -> None:
    # A real frame (tests/data/kalshi-gold15m): ts has µs, ts_ms the same moment in ms.
    raw = (
        b'{"type":"orderbook_delta","sid":1,"seq":2146643,"msg":{"market_ticker":'
        b'"KXGOLD15M-26AUG050000-00","market_id":"4f5c2e39-5132-4147-ba3f-b3485ad89427",'
        b'"price_dollars":"0.3200","delta_fp":"-46.02","side":"no",'
        b'"ts":"2026-08-05T03:45:40.722003Z","ts_ms":1785901540722}}'
    )
    assert decode_ws(raw).body.exchange_ts == 1_785_901_540_722_003  # type: ignore[union-attr]
    # a ts that disagrees with ts_ms refines nothing: ts_ms is the exchange's time
    wrong = raw.replace(b"40.722003Z", b"41.722003Z")
    assert decode_ws(wrong).body.exchange_ts == 1_785_901_540_722_000  # type: ignore[union-attr]
    plain = raw.replace(b'"ts":"2026-08-05T03:45:40.722003Z",', b"")
    assert decode_ws(plain).body.exchange_ts == 1_785_901_540_722_000  # type: ignore[union-attr]
    # a digit int() refuses ("²" is a digit to str.isdigit) refines nothing, never raises
    odd = raw.replace(b"40.722003Z", "40.72200²Z".encode())
    assert decode_ws(odd).body.exchange_ts == 1_785_901_540_722_000  # type: ignore[union-attr]


def test_the_older_subscribed_shape_without_msg_decodes() -> None:
    assert decode_ws(b'{"type":"subscribed","id":1}') == Message(
        "subscribed", Subscribed(None, None), sid=None, seq=None, id=1
    )
    assert decode_ws(b'{"type":"subscribed","id":2,"sid":7}') == Message(
        "subscribed", Subscribed(None, 7), sid=7, seq=None, id=2
    )
