"""Labelled counters exist at 0 from the start (fresh-user finding 13b): an alert such as
``increase(kalshi_store_dead_letters_total[10m]) > 0`` has no series to compare before the
first increment and so misses it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import trio
from prometheus_client import REGISTRY

from kalshi.gather.connection import Connection
from kalshi.models.rows import GAP_KINDS, TABLE_COLUMNS
from kalshi.testing.memory import memory_connector
from tests.gather.test_connection_timing import context, row_sink, sim_exchange


def test_an_open_store_has_every_table_counter_at_zero(db_url: str, tmp_path: Path) -> None:
    # A fresh interpreter: nothing in it has counted anything yet.
    script = textwrap.dedent(
        f"""
        import trio
        from prometheus_client import generate_latest
        from kalshi.config import SpoolConfig, StoreConfig
        from kalshi.store import open_store

        async def main():
            cfg = StoreConfig(
                gatherer_id="zero-1",
                spool=SpoolConfig(dir={str(tmp_path / "spool")!r},
                                  dead_letter_dir={str(tmp_path / "dead")!r}),
            )
            async with open_store({db_url!r}, cfg, watermark=False):
                pass

        trio.run(main)
        print(generate_latest().decode())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    for table in TABLE_COLUMNS:
        for name in ("dead_letters", "flush_errors", "spool_errors", "spool_damaged_lines"):
            assert f'kalshi_store_{name}_total{{table="{table}"}} 0.0' in lines


def test_gap_kinds_are_counted_from_zero() -> None:
    script = (
        "import kalshi.gather.metrics; from prometheus_client import generate_latest;"
        " print(generate_latest().decode())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    for kind in GAP_KINDS:
        assert f'kalshi_gaps_total{{kind="{kind}"}} 0.0' in lines


async def test_a_connection_has_its_reconnect_counter_at_zero(tmp_path: Path) -> None:
    async with sim_exchange() as sim, trio.open_nursery() as nursery:
        ctx = context(sim, tmp_path, memory_connector(sim), row_sink(nursery))
        Connection(ctx, "zero-check-0", "ticker", scoped=False)
        value = REGISTRY.get_sample_value(
            "kalshi_ws_reconnects_total", {"connection": "zero-check-0"}
        )
        assert value == 0.0
        nursery.cancel_scope.cancel()
