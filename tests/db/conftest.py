"""Helpers for the storage tests: configs pointing spool and dead letters at tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kalshi.config import (
    Duration,
    SpoolConfig,
    StoreConfig,
    WriterConfig,
    WritersConfig,
)


def store_config(
    tmp_path: Path,
    *,
    batch_size: int = 100,
    flush_interval: float = 0.05,
    memory_rows: int = 200_000,
    grace: float = 10.0,
) -> StoreConfig:
    writer = WriterConfig(batch_size, Duration(flush_interval))
    return StoreConfig(
        writers=WritersConfig(
            trades=writer,
            orderbook_deltas=writer,
            tickers=writer,
            orderbook_snapshots=writer,
            market_lifecycle=writer,
            markets=writer,
            gaps=writer,
        ),
        spool=SpoolConfig(
            dir=str(tmp_path / "spool"),
            memory_rows=memory_rows,
            dead_letter_dir=str(tmp_path / "dead-letter"),
        ),
        shutdown_grace=Duration(grace),
    )


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., StoreConfig]:
    """``make_cfg(batch_size=..., flush_interval=..., memory_rows=..., grace=...)``."""

    def make(**kwargs: Any) -> StoreConfig:
        return store_config(tmp_path, **kwargs)

    return make


@pytest.fixture
def cfg(tmp_path: Path) -> StoreConfig:
    return store_config(tmp_path)
