"""Where a gatherer's previous run stopped, from its journal: the fallback of restart
recovery when its database cannot be read at start (``kalshi.store.recovery`` is the
first choice: it knows what was committed)."""

from __future__ import annotations

from pathlib import Path

from kalshi.journal import JournalRecord, journal_files, read_journal

__all__ = ["last_frames"]


def last_frames(directory: Path, gatherer_id: str, newest: int = 3) -> dict[str, int]:
    """Per channel, the receive time (µs) of the last frame received in the ``newest``
    journal files of ``gatherer_id`` under ``directory`` (empty when there are none).
    Blocking; damaged lines are skipped. A connection whose ``connect`` marker is in an
    older file than that is not attributed to a channel."""
    root = directory / gatherer_id
    if not root.is_dir():
        return {}
    paths = journal_files([root])[-newest:]
    last: dict[str, int] = {}
    for item in read_journal(paths):
        if isinstance(item, JournalRecord) and item.kind == "frame" and item.direction == "in":
            for channel in item.channels:
                last[channel] = max(last.get(channel, 0), item.wall_us)
    return last
