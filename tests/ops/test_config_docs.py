"""docs/configuration.md documents every key of both configs, with its default."""

from __future__ import annotations

import runpy
from pathlib import Path

import attrs
import pytest

from kalshi.config import DedupConfig, GathererConfig, WritersConfig, load_config
from kalshi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/configuration.md"
GENERATOR = runpy.run_path(str(ROOT / "scripts/config_docs.py"))


def _documented() -> set[str]:
    return {
        line.split("`")[1]
        for line in DOC.read_text().splitlines()
        if line.startswith("| `") and line.count("|") == 5
    }


def test_every_key_has_a_description() -> None:
    keys = [key for cls in (GathererConfig, DedupConfig) for key, _, _ in GENERATOR["rows"](cls)]
    missing = sorted(key for key in keys if not GENERATOR["DESCRIPTIONS"].get(key))
    assert missing == []
    assert sorted(set(GENERATOR["DESCRIPTIONS"]) - set(keys)) == []  # none stale


def test_the_doc_lists_every_key_of_both_configs() -> None:
    keys = {key for cls in (GathererConfig, DedupConfig) for key, _, _ in GENERATOR["rows"](cls)}
    assert len(keys) == 88
    assert sorted(keys - _documented()) == []


def test_the_tables_are_what_the_generator_writes() -> None:
    text = DOC.read_text()
    assert GENERATOR["render"](text) == text, "run: python scripts/config_docs.py"


def test_defaults_and_units_are_shown() -> None:
    lines = {line.split("`")[1]: line for line in DOC.read_text().splitlines() if "| `" in line}
    assert lines["websocket.reconnect_backoff"] == (
        "| `websocket.reconnect_backoff` | duration | `1s` | first reconnect delay "
        "(doubles, with jitter) |"
    )
    assert "| size | `256MiB` |" in lines["journal.rotate_bytes"]
    assert "| duration | `500ms` |" in lines["writers.orderbook_deltas.flush_interval"]
    assert '| string | `""` | PostgreSQL' in lines["timescaledb.url"]


def _writer_prose() -> list[str]:
    """The backquoted names of the paragraph after the gatherer's table on ``writers.<name>``."""
    text = DOC.read_text().split("`writers.<name>`", 1)[1].split("\n\n", 1)[0]
    return text.split("`")[1::2]


def test_the_writer_names_the_doc_gives_are_the_ones_a_config_takes(tmp_path: Path) -> None:
    # Outside tester (item 5): the prose offered `lifecycle`, which a config is refused.
    names = _writer_prose()
    tables = [f.name for f in attrs.fields(WritersConfig)]
    assert names[:7] == tables
    assert names[7:13] == [
        "orderbook", "orderbook_deltas", "snapshots", "orderbook_snapshots",
        "lifecycle", "market_lifecycle",
    ]  # fmt: skip
    path = tmp_path / "gatherer.yaml"
    for name, table in [(t, t) for t in tables] + [
        ("orderbook", "orderbook_deltas"),
        ("snapshots", "orderbook_snapshots"),
    ]:
        path.write_text(f"writers: {{{name}: {{batch_size: 7}}}}\n")
        writers = load_config(path, GathererConfig).writers
        assert getattr(writers, table).batch_size == 7, name
    path.write_text("writers: {lifecycle: {batch_size: 7}}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path, GathererConfig)
    assert refused.value.problems == [
        "writers.lifecycle: unknown key (now writers.market_lifecycle)"
    ]
