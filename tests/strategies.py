"""Hypothesis strategies for hostile input, shared by the decoder and pipeline tests."""

from __future__ import annotations

from hypothesis import strategies as st

# Any JSON-ish value, NaN included (json.dumps writes it; a decoder must refuse it).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=True),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)

# Every frame type we decode, and one we do not.
frame_types = st.sampled_from(
    [
        "orderbook_snapshot",
        "orderbook_delta",
        "trade",
        "ticker",
        "market_lifecycle_v2",
        "event_lifecycle",
        "event_fee_update",
        "subscribed",
        "ok",
        "error",
        "unsubscribed",
        "x",
    ]
)

# The message fields decoders read, with any values.
messages = st.dictionaries(
    st.sampled_from(
        [
            "market_ticker",
            "market_id",
            "price_dollars",
            "delta_fp",
            "side",
            "ts",
            "ts_ms",
            "yes_dollars_fp",
            "no_dollars_fp",
            "trade_id",
            "count_fp",
            "yes_price_dollars",
            "taker_side",
            "event_type",
            "event_ticker",
            "channel",
            "sid",
            "code",
            "msg",
        ]
    ),
    json_values,
    max_size=8,
)
