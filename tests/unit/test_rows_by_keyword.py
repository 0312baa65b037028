"""Every row the package builds names its columns: two swapped int columns cannot go by
unnoticed (rows are NamedTuples of 9-16 fields, many of them int)."""

from __future__ import annotations

import ast
from pathlib import Path

import kalshi
from kalshi.models import rows

row_types = {t.__name__ for t in rows.Row.__args__}  # type: ignore[attr-defined]


def test_rows_are_built_by_keyword() -> None:
    positional = []
    for path in sorted(Path(kalshi.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) in row_types
                and node.args
            ):
                positional.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    expected = {
        "TradeRow", "DeltaRow", "SnapshotRow", "TickerRow", "LifecycleRow", "MarketRow", "GapRow"
    }  # fmt: skip
    assert row_types == expected
    assert positional == []
