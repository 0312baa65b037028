"""The compiled path for the hot shapes (kalshi.wire.fast) agrees with the general decoder
on every input: it takes the current shapes, declines everything else, and a bad frame
still comes back ``Invalid`` naming its field and value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalshi.models import BookDelta, BookSnapshot, Invalid, Message, Side, Ticker, Trade
from kalshi.wire import decode_ws
from kalshi.wire.fast import decode_fast
from kalshi.wire.ws import decode_general
from tests.strategies import json_values

DELTA = {
    "market_ticker": "KXHIGHNY-26NOV25-B81.5",
    "market_id": "9b0f6b43",
    "price_dollars": "0.4200",
    "delta_fp": "-54.00",
    "side": "yes",
    "ts": "2026-11-24T20:44:01Z",
    "ts_ms": 1795553041000,
}
TRADE = {
    "trade_id": "879217f6",
    "market_ticker": "KXHIGHNY-26NOV25-B81.5",
    "yes_price_dollars": "0.3600",
    "no_price_dollars": "0.6400",
    "count_fp": "2.50",
    "taker_side": "no",
    "taker_outcome_side": "yes",
    "is_block_trade": False,
    "ts": 1795553041,
    "ts_ms": 1795553041391,
}
TICKER = {
    "market_id": "9b0f6b43",
    "market_ticker": "KXHIGHNY-26NOV25-B81.5",
    "price_dollars": "",
    "yes_bid_dollars": "0.4500",
    "yes_ask_dollars": "0.5300",
    "volume_fp": "33896.00",
    "open_interest_fp": "20422.00",
    "dollar_volume": 16948,
    "dollar_open_interest": 10211,
    "yes_bid_size_fp": "300.00",
    "last_trade_size_fp": "25.00",
    "ts_ms": 1795553041000,
}
SNAPSHOT = {
    "market_ticker": "KXHIGHNY-26NOV25-B81.5",
    "market_id": "9b0f6b43",
    "yes_dollars_fp": [["0.0100", "300.00"], ["0.0800", "12.50"]],
}
BODIES = {
    "orderbook_delta": DELTA,
    "trade": TRADE,
    "ticker": TICKER,
    "orderbook_snapshot": SNAPSHOT,
}


def frame(kind: str, msg: Any, **envelope: Any) -> bytes:
    return json.dumps({"type": kind, "sid": 2, "seq": 7, **envelope, "msg": msg}).encode()


def test_the_current_shapes_take_the_compiled_path_with_exact_values() -> None:
    assert decode_fast(frame("orderbook_delta", DELTA)) == Message(
        "orderbook_delta",
        BookDelta("KXHIGHNY-26NOV25-B81.5", "9b0f6b43", Side.YES, 42000, -5400, 1795553041000000),
        2,
        7,
        None,
    )
    assert decode_fast(frame("trade", TRADE)) == Message(
        "trade",
        Trade(
            "879217f6",
            "KXHIGHNY-26NOV25-B81.5",
            36000,
            64000,
            250,
            Side.YES,
            1795553041391000,
            False,
        ),
        2,
        7,
        None,
    )
    assert decode_fast(frame("ticker", TICKER, seq=None)) == Message(
        "ticker",
        Ticker(
            "KXHIGHNY-26NOV25-B81.5",
            "9b0f6b43",
            None,
            45000,
            53000,
            3389600,
            2042200,
            16948,
            10211,
            30000,
            None,
            2500,
            1795553041000000,
        ),
        2,
        None,
        None,
    )
    assert decode_fast(frame("orderbook_snapshot", SNAPSHOT)) == Message(
        "orderbook_snapshot",
        BookSnapshot("KXHIGHNY-26NOV25-B81.5", "9b0f6b43", ((1000, 30000), (8000, 1250)), ()),
        2,
        7,
        None,
    )
    for kind, body in BODIES.items():
        raw = frame(kind, body)
        assert decode_fast(raw) == decode_general(raw) == decode_ws(raw)


def test_unknown_fields_are_ignored_on_the_compiled_path() -> None:
    raw = frame("orderbook_delta", {**DELTA, "new_field": {"x": [1, 2]}}, extra=True)
    assert decode_fast(raw) == decode_general(raw)
    assert isinstance(decode_fast(raw), Message)


@pytest.mark.parametrize(
    ("kind", "msg"),
    [
        # legacy shapes: cents and whole contracts
        (
            "orderbook_delta",
            {**DELTA, "price_dollars": None, "price": 42, "delta_fp": None, "delta": -54},
        ),
        ("trade", {**TRADE, "no_price_dollars": None, "no_price": 64}),
        ("ticker", {**TICKER, "yes_bid_dollars": None, "yes_bid": 45}),
        ("orderbook_snapshot", {"market_ticker": "T", "yes": [[1, 300]]}),
        ("orderbook_snapshot", {"market_ticker": "T", "no_dollars": [["0.010", 300]]}),
        # time only as ts (seconds) or RFC 3339
        ("orderbook_delta", {k: v for k, v in DELTA.items() if k != "ts_ms"}),
        ("ticker", {**{k: v for k, v in TICKER.items() if k != "ts_ms"}, "ts": 1795553041}),
    ],
)
def test_legacy_shapes_go_to_the_general_decoder(kind: str, msg: dict[str, Any]) -> None:
    raw = frame(kind, msg)
    assert decode_fast(raw) is None
    assert isinstance(decode_ws(raw), Message)
    assert decode_ws(raw) == decode_general(raw)


@pytest.mark.parametrize(
    ("kind", "change", "error"),
    [
        (
            "orderbook_delta",
            {"price_dollars": "0.123456"},
            "orderbook_delta: price_dollars: price: '0.123456' has more than 5 decimal places",
        ),
        (
            "orderbook_delta",
            {"side": "maybe"},
            "orderbook_delta: side: expected 'yes' or 'no', got 'maybe'",
        ),
        (
            "orderbook_delta",
            {"ts_ms": 1.5},
            "orderbook_delta: ts_ms: expected an integer, got float",
        ),
        ("trade", {"count_fp": "two"}, "trade: count_fp: size: not a decimal number: 'two'"),
        (
            "ticker",
            {"volume_fp": 12},
            "ticker: volume_fp: size: expected a decimal string, got int",
        ),
        (
            "orderbook_snapshot",
            {"yes_dollars_fp": [["0.01", "1.00"], ["0.02"]]},
            "orderbook_snapshot: yes_dollars_fp[1]: expected a [price, size] pair",
        ),
    ],
)
def test_a_bad_value_is_invalid_naming_field_and_value(
    kind: str, change: dict[str, Any], error: str
) -> None:
    raw = frame(kind, {**BODIES[kind], **change})
    assert decode_fast(raw) is None
    assert decode_ws(raw) == Invalid(raw, error)


def test_a_bad_envelope_is_invalid() -> None:
    raw = frame("trade", TRADE, sid=True)
    assert decode_fast(raw) is None
    assert decode_ws(raw) == Invalid(raw, "trade: sid: expected an integer, got bool")


# Near-valid frames: a good body of a hot type with some fields replaced by anything.
_mutations = st.dictionaries(
    st.sampled_from(
        sorted(
            {key for body in BODIES.values() for key in body}
            | {"price", "delta", "no_price", "yes_bid", "volume", "yes", "no", "yes_dollars"}
        )
    ),
    st.one_of(json_values, st.sampled_from(["0.5000", "1.00", "", "yes", "no", "-3.00"])),
    max_size=3,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(BODIES)),
    _mutations,
    st.lists(st.sampled_from(sorted({k for b in BODIES.values() for k in b})), max_size=2),
    st.one_of(st.integers(-2, 2**70), json_values),
)
def test_both_paths_agree_on_any_near_valid_frame(
    kind: str, change: dict[str, Any], dropped: list[str], seq: object
) -> None:
    msg = {k: v for k, v in {**BODIES[kind], **change}.items() if k not in dropped}
    try:
        raw = frame(kind, msg, seq=seq)
    except ValueError:  # NaN inside a nested value json cannot write
        return
    fast = decode_fast(raw)
    assert fast is None or fast == decode_general(raw)
    assert decode_ws(raw) == decode_general(raw)


@pytest.mark.parametrize("value", [-(2**63) - 1, 2**63, 2**64])
def test_integers_beyond_int64_are_left_to_the_general_decoder(value: int) -> None:
    """orjson reads an integer beyond int64/uint64 as a float, which the general decoder
    refuses; between int64 and uint64 it is an int. The compiled path declines both."""
    raw = frame("orderbook_delta", {**DELTA, "ts_ms": value})
    assert decode_fast(raw) is None
    assert decode_ws(raw) == decode_general(raw)
    expected = (
        Invalid(raw, "orderbook_delta: ts_ms: expected an integer, got float")
        if value in (-(2**63) - 1, 2**64)
        else decode_general(raw)
    )
    assert decode_ws(raw) == expected


_TS_CHARS = st.sampled_from([*"0123456789.:-TZz +", "\u00b2", "\u0665", "\uff15", "é"])


@st.composite
def _near_rfc3339(draw: st.DrawFn) -> tuple[int, object]:
    """A ``ts_ms`` and an RFC 3339 text of the same moment (or of a moment nearby) with
    0 to 9 fraction digits, trimmed of trailing zeros as Kalshi sends them or padded, ``Z``
    or an offset; then maybe damaged: a character replaced (non-ASCII digits among them),
    cut or lengthened, or no text."""
    ms = draw(st.integers(-(2**63), 2**63 - 1) | st.integers(1_700_000_000_000, 1_800_000_000_000))
    micros = ms * 1000 + draw(st.integers(0, 999))
    if draw(st.booleans()):  # another moment: a second, a millisecond or a µs away
        micros += draw(st.sampled_from([-1_000_000, -1000, -1, 1, 1000, 1_000_000]))
    seconds, frac = divmod(micros, 1_000_000)
    offset = draw(st.sampled_from([0, 120, -330]))  # minutes east of UTC
    try:
        local = datetime.fromtimestamp(seconds, UTC) + timedelta(minutes=offset)
    except (OverflowError, OSError, ValueError):
        local = datetime(2026, 11, 24, 20, 44, 1, tzinfo=UTC)
    fraction = (
        f"{frac:06d}".rstrip("0")
        if draw(st.booleans())
        else f"{frac:06d}000"[: draw(st.integers(6, 9))]
    )
    zone = (
        "Z"
        if offset == 0
        else f"{'+' if offset > 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    )
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + zone
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(_TS_CHARS) + text[at + 1 :]
    text = draw(st.sampled_from([text, text[:-1], text + "Z", text.replace("Z", "z")]))
    return ms, draw(st.sampled_from([text, None, seconds]))


@given(case=_near_rfc3339())
@settings(max_examples=2000, deadline=None)
def test_finest_us_fast_path_agrees_with_its_reference(case: tuple[int, object]) -> None:
    """``finest_us`` reads the common text with its second memoised; its reference parses
    it by the rules: the same µs for any ``ts_ms`` and any near-RFC 3339 text (issue 17)."""
    from kalshi.wire._fields import _finest_general, finest_us

    ms, text = case
    assert finest_us(ms, text) == _finest_general(ms, text)
    assert finest_us(ms, text) == _finest_general(ms, text)  # again, memoised


def test_finest_us_refines_only_an_agreeing_text() -> None:
    from kalshi.wire._fields import finest_us

    ms = 1_795_553_041_391
    assert finest_us(ms, "2026-11-24T20:44:01.391273Z") == ms * 1000 + 273
    assert finest_us(ms, "2026-11-24T20:44:02.391273Z") == ms * 1000  # another second
    assert finest_us(ms, "2026-11-24T20:45:01.391273Z") == ms * 1000  # another minute
    assert finest_us(ms, "2026-11-25T20:44:01.391273Z") == ms * 1000  # another day
    assert finest_us(ms, "2026-11-24T20:44:01.392273Z") == ms * 1000  # another millisecond
    assert finest_us(ms, "2026-11-24T20:44:01.391273001Z") == ms * 1000  # finer than a µs
    assert finest_us(ms, "2026-11-24T20:44:\u0660\u0661.391273Z") == ms * 1000  # not ASCII


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2026-08-05T03:45:42.00174Z", 1_785_901_542_001_740),  # the tester's frame (F2)
        ("2026-08-05T03:45:42.0017Z", 1_785_901_542_001_700),
        ("2026-08-05T03:45:42.001Z", 1_785_901_542_001_000),
        ("2026-08-05T03:45:42.00Z", 1_785_901_542_000_000),
        ("2026-08-05T03:45:42.0Z", 1_785_901_542_000_000),
        ("2026-08-05T03:45:42Z", 1_785_901_542_000_000),
        ("2026-08-05T03:45:42.001741Z", 1_785_901_542_001_741),
        ("2026-08-05T03:45:42.0017410Z", 1_785_901_542_001_741),
        ("2026-08-05T03:45:42.001741000Z", 1_785_901_542_001_741),
        ("2026-08-05T03:45:42.00174z", 1_785_901_542_001_740),
        ("2026-08-05T05:45:42.00174+02:00", 1_785_901_542_001_740),
        ("2026-08-04T22:15:42.00174-05:30", 1_785_901_542_001_740),
    ],
)
def test_finest_us_reads_any_fraction_length_and_zone_exactly(text: str, micros: int) -> None:
    """Kalshi trims trailing zeros (``.00174`` is 1 740 µs): 0 to 9 digits, ``Z`` or an
    offset, each exact to the µs, on both decoders (F2: 10 402 of 100 838 real deltas had
    fewer than 6 digits and lost their µs)."""
    from kalshi.wire._fields import _finest_general, finest_us

    ms = micros // 1000
    assert finest_us(ms, text) == _finest_general(ms, text) == micros
    frame = {"type": "orderbook_delta", "sid": 1, "seq": 1,
             "msg": {**DELTA, "ts": text, "ts_ms": ms}}  # fmt: skip
    for decode in (decode_ws, decode_general):
        decoded = decode(json.dumps(frame).encode())
        assert isinstance(decoded, Message) and isinstance(decoded.body, BookDelta)
        assert decoded.body.exchange_ts == micros


def test_a_timestamp_whose_seconds_are_no_number_refines_nothing() -> None:
    # Found by the property test above: the seconds' int() raised, out of decode_ws.
    frame = {"type": "orderbook_delta", "sid": 1, "seq": 1,
             "msg": {**DELTA, "ts": "2026-11-24T20:44:.0.000000Z", "ts_ms": 0}}  # fmt: skip
    for decode in (decode_ws, decode_general):
        decoded = decode(json.dumps(frame).encode())
        assert isinstance(decoded, Message) and isinstance(decoded.body, BookDelta)
        assert decoded.body.exchange_ts == 0


_TICKER_PAIRS = {
    "price": "price_dollars",
    "yes_bid": "yes_bid_dollars",
    "yes_ask": "yes_ask_dollars",
    "volume": "volume_fp",
    "open_interest": "open_interest_fp",
}


@settings(max_examples=400, deadline=None)
@given(
    legacy=st.dictionaries(
        st.sampled_from(sorted(_TICKER_PAIRS)),
        st.one_of(json_values, st.sampled_from([45, "0.4500", "", None])),
        max_size=3,
    ),
    current=st.dictionaries(
        st.sampled_from(sorted(_TICKER_PAIRS.values())),
        st.sampled_from(["", None, "0.4500", "12.00", "0.000001", "-1.00"]),
        max_size=3,
    ),
    dropped=st.lists(st.sampled_from(sorted(_TICKER_PAIRS.values())), max_size=3),
)
def test_ticker_current_and_legacy_names_agree_with_the_general_decoder(
    legacy: dict[str, Any], current: dict[str, Any], dropped: list[str]
) -> None:
    """The ticker's current form is read inline and a frame with any legacy name set field
    by field: with any mix of the five legacy names and their current ones (set, empty,
    null or absent), both paths give what the general decoder gives."""
    msg = {k: v for k, v in {**TICKER, **current, **legacy}.items() if k not in dropped}
    raw = frame("ticker", msg, seq=None)
    fast = decode_fast(raw)
    assert fast is None or fast == decode_general(raw)
    assert decode_ws(raw) == decode_general(raw)
