"""``GapRow.kind`` names exactly the kinds the code writes (kalshi.models.rows.GAP_KINDS)."""

from __future__ import annotations

import ast
from pathlib import Path

import kalshi
from kalshi.dedup.merge import HOLE_KIND
from kalshi.models.rows import GAP_KINDS, GapRow

KIND = GapRow._fields.index("kind")
NAMED = {"HOLE_KIND": HOLE_KIND}


def _strings(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    if isinstance(node, ast.Name) and node.id in NAMED:
        return {NAMED[node.id]}
    return set()


def _emitted() -> set[str]:
    kinds: set[str] = set()
    root = Path(kalshi.__file__).parent
    for path in root.rglob("*.py"):
        if path.parent.name == "testing":
            continue  # test recordings take their kinds from the test
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "GapRow"):
                continue
            if len(node.args) > KIND:
                kinds |= _strings(node.args[KIND])
            for keyword in node.keywords:
                if keyword.arg == "kind":
                    kinds |= _strings(keyword.value)
    return kinds


def test_the_documented_kinds_are_exactly_the_emitted_ones() -> None:
    assert _emitted() == GAP_KINDS
