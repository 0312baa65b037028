"""Helpers shared by the journal tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from kalshi.config import ByteSize, Duration, JournalConfig

# 2026-11-24T22:59:00Z: one minute before an hour edge.
BASE_WALL = 1795561140.0


def journal_config(tmp_path: Path, **changes: object) -> JournalConfig:
    values: dict[str, object] = {
        "dir": str(tmp_path / "journal"),
        "rotate_bytes": ByteSize(256 << 20),
        "rotate_interval": Duration(3600.0),
        "compress": False,
    }
    values.update(changes)
    return JournalConfig(**values)  # type: ignore[arg-type]


def virtual_wall(base: float = BASE_WALL) -> int:
    """The wall clock (µs since the epoch) driven by Trio's (mock) clock."""
    return round((base + trio.current_time()) * 1_000_000)


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Run the writer's disk work on the event loop, so virtual time stays exact."""
    await trio.lowlevel.checkpoint()
    return fn(*args)
