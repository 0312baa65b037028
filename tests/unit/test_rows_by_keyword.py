"""Every row the package, the tests and the benchmarks build names its columns: two swapped
int columns cannot go by unnoticed (rows are NamedTuples of 9-16 fields, many of them int).
The four rows built per frame are the exception, checked value by value against their
keyword form."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson

import kalshi
from kalshi.models import rows
from kalshi.pipeline import FrameProcessor

ROOT = Path(kalshi.__file__).resolve().parents[1]
row_types = {t.__name__ for t in rows.Row.__args__}  # type: ignore[attr-defined]


def test_rows_are_built_by_keyword() -> None:
    """In the package, the tests, the benchmarks and the scripts (``TradeRow(...)`` or
    ``rows.TradeRow(...)``)."""
    positional = []
    for folder in (ROOT / "kalshi", ROOT / "tests", ROOT / "benchmarks", ROOT / "scripts"):
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in row_types:
                    positional.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    expected = {
        "TradeRow", "DeltaRow", "SnapshotRow", "TickerRow", "LifecycleRow", "MarketRow", "GapRow"
    }  # fmt: skip
    assert row_types == expected
    assert positional == []


def test_only_the_four_hot_rows_are_built_positionally() -> None:
    """The pipeline builds its four per-frame rows as ``_row(RowType, values)`` (no
    ``__new__`` in Python: a keyword call cost about five times as much); nothing else
    does, and the next test checks each against the keyword form."""
    sites = []
    for path in sorted(Path(kalshi.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_row":
                sites.append((path.name, ast.unparse(node.args[0])))
    assert sorted(sites) == [
        ("frames.py", "DeltaRow"),
        ("frames.py", "SnapshotRow"),
        ("frames.py", "TickerRow"),
        ("frames.py", "TradeRow"),
    ]


def _frame(kind: str, sid: int, seq: int | None, **msg: object) -> bytes:
    envelope: dict[str, object] = {"type": kind, "sid": sid, "msg": msg}
    if seq is not None:
        envelope["seq"] = seq
    return orjson.dumps(envelope)


def test_the_hot_rows_equal_their_keyword_form() -> None:
    # Every int column a different value: two swapped columns would differ.
    p = FrameProcessor("g-1")
    p.process(
        3,
        1,
        10,
        orjson.dumps(
            {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 5}}
        ),
    )
    snap = p.process(
        3,
        2,
        20,
        _frame(
            "orderbook_snapshot",
            5,
            1,
            market_ticker="T",
            yes_dollars_fp=[["0.1000", "7.00"]],
            no_dollars_fp=[["0.2000", "8.00"]],
        ),
    )
    assert snap.rows == [
        (
            "orderbook_snapshots",
            rows.SnapshotRow(
                snapshot_ts=20,
                exchange_ts=None,
                received_at=20,
                gatherer_id="g-1",
                ticker="T",
                source="ws",
                yes_bids="[[10000,700]]",
                no_bids="[[20000,800]]",
                conn_id=3,
                frame_no=2,
                sid=5,
                seq=1,
            ),
        )
    ]
    delta = p.process(
        3,
        4,
        30,
        _frame(
            "orderbook_delta",
            5,
            2,
            market_ticker="T",
            price_dollars="0.1000",
            delta_fp="-1.50",
            side="yes",
            ts_ms=1_700_000_000_123,
        ),
    )
    assert delta.rows == [
        (
            "orderbook_deltas",
            rows.DeltaRow(
                exchange_ts=1_700_000_000_123_000,
                received_at=30,
                gatherer_id="g-1",
                ticker="T",
                side=True,
                price=10000,
                size_delta=-150,
                conn_id=3,
                frame_no=4,
                sid=5,
                seq=2,
            ),
        )
    ]
    trade = p.process(
        6,
        5,
        40,
        _frame(
            "trade",
            8,
            9,
            trade_id="t-1",
            market_ticker="T",
            yes_price_dollars="0.3600",
            count_fp="2.50",
            taker_side="yes",
            ts_ms=1_700_000_001_000,
        ),
    )
    assert trade.rows == [
        (
            "trades",
            rows.TradeRow(
                exchange_ts=1_700_000_001_000_000,
                received_at=40,
                gatherer_id="g-1",
                ticker="T",
                trade_id="t-1",
                price=36000,
                size=250,
                taker_side=True,
                is_block_trade=False,
                source="ws",
                conn_id=6,
                frame_no=5,
                seq=9,
            ),
        )
    ]
    ticker = p.process(
        6,
        7,
        50,
        _frame(
            "ticker",
            11,
            None,
            market_ticker="T",
            price_dollars="0.0100",
            yes_bid_dollars="0.0200",
            yes_ask_dollars="0.0300",
            volume_fp="4.00",
            open_interest_fp="5.00",
            dollar_volume=12,
            dollar_open_interest=13,
            yes_bid_size_fp="6.00",
            yes_ask_size_fp="7.00",
            last_trade_size_fp="8.00",
            ts_ms=1_700_000_002_000,
        ),
    )
    assert ticker.rows == [
        (
            "tickers",
            rows.TickerRow(
                exchange_ts=1_700_000_002_000_000,
                received_at=50,
                gatherer_id="g-1",
                ticker="T",
                yes_bid=2000,
                yes_ask=3000,
                last_price=1000,
                volume=400,
                open_interest=500,
                dollar_volume=12,
                dollar_open_interest=13,
                yes_bid_size=600,
                yes_ask_size=700,
                last_trade_size=800,
                conn_id=6,
                frame_no=7,
            ),
        )
    ]
    for _, row in snap.rows + delta.rows + trade.rows + ticker.rows:
        assert type(row) in rows.Row.__args__  # type: ignore[attr-defined]
