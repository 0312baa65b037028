"""Rows are built by keyword (issue 21): a row has 9 to 16 columns, several of them
integers in the same unit, so two swapped positional arguments would go unnoticed. Every
construction of a row type in the package, the tests and the benchmarks names its fields;
rows read back from the database (``GapRow._make``) take the table's column order."""

from __future__ import annotations

import ast
from pathlib import Path

from kalshi.models import rows

ROOT = Path(__file__).resolve().parents[2]
ROW_TYPES = {
    "TradeRow",
    "DeltaRow",
    "SnapshotRow",
    "TickerRow",
    "LifecycleRow",
    "MarketRow",
    "GapRow",
}


def test_the_row_types_are_the_tables() -> None:
    assert {getattr(rows, name).__name__ for name in ROW_TYPES} == ROW_TYPES
    assert len(ROW_TYPES) == len(rows.TABLE_COLUMNS)


def test_every_row_is_built_by_keyword() -> None:
    positional = []
    for folder in ("kalshi", "tests", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in ROW_TYPES:
                    positional.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert positional == []
