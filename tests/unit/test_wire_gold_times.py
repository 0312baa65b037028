"""Every real delta's exchange time (tests/data/kalshi-gold15m, Kalshi's production frames)
is its RFC 3339 ``ts`` to the µs, read independently of our parser: Kalshi trims the
fraction's trailing zeros (``.00174``), and a tenth of the deltas have fewer than six
digits (F2)."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson

from kalshi.models import BookDelta, Message
from kalshi.wire import decode_ws
from kalshi.wire.ws import decode_general

GOLD = Path(__file__).parent.parent / "data" / "kalshi-gold15m" / "events"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(text: str) -> int:
    """The independent reading: the standard library's ISO parser, µs by integer sums."""
    delta = datetime.fromisoformat(text) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def test_every_real_delta_keeps_the_microseconds_of_its_ts() -> None:
    agree = Counter[str]()
    digits = Counter[int]()
    for path in sorted(GOLD.glob("*/*.ndjson.gz")):
        with gzip.open(path) as lines:
            frames = [orjson.loads(line)["event"] for line in lines]
        for event in frames:
            if event["type"] != "orderbook_delta":
                continue
            text = event["msg"]["ts"]
            digits[len(text) - 21] += 1
            expected = _micros(text)
            raw = orjson.dumps(event)
            for name, decode in (("fast", decode_ws), ("general", decode_general)):
                decoded = decode(raw)
                assert isinstance(decoded, Message) and isinstance(decoded.body, BookDelta)
                agree[name] += decoded.body.exchange_ts == expected
    assert agree == {"fast": 100_838, "general": 100_838}
    assert digits == {6: 90_436, 5: 9_324, 4: 952, 3: 112, 2: 12, 1: 2}
