"""Restart recovery from the journal: the rows of frames the previous run journaled but
whose batch the database never acknowledged (``kill -9``, a crash, a power cut).

Every frame is journaled before it is parsed (``docs/journal.md``), so what a dead process
held in its writers' memory is on disk. :func:`journal_tail` reads the journal files that
can hold such frames (from the one open at the ingest watermark on; without a watermark
the newest three), feeds every record through the live pipeline as ``kalshi replay``
does, and keeps the rows of every frame received at or after the watermark (without one:
of the frames after the newest one the database acknowledged, per connection and table,
``kalshi.store.recovery.acknowledged``), and the rows of the REST answers and gap markers
journaled since the watermark. Rows the database already
holds are dropped again by their keys when written, so nothing is doubled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kalshi.journal import JournalRecord, journal_files, read_journal
from kalshi.journal.files import file_stamp
from kalshi.replay.core import Replayer
from kalshi.store.recovery import Tail

__all__ = ["journal_tail", "tail_files"]

_NEWEST = 3  # files read when the previous run left no watermark
# The table whose rows tell where a channel's frames end (LastRun's fields).
_TABLE_FIELD = {
    "trades": "trades",
    "orderbook_deltas": "orderbook",
    "orderbook_snapshots": "orderbook",
    "tickers": "tickers",
    "market_lifecycle": "lifecycle",
}

Acked = Callable[[list[int]], dict[tuple[int, str], int]]


def tail_files(root: Path, complete_before: int | None) -> list[Path]:
    """The journal files under ``root`` that can hold frames received at or after
    ``complete_before`` (µs): the last one opened before it and every later one (a file's
    name carries its opening second); without a watermark the newest three."""
    if not root.is_dir():
        return []
    paths = journal_files([root])
    if complete_before is None:
        return paths[-_NEWEST:]
    first = 0
    for i, path in enumerate(paths):
        opened = file_stamp(path)
        if opened is not None and opened * 1_000_000 <= complete_before:
            first = i
    return paths[first:]


def journal_tail(
    directory: Path,
    gatherer_id: str,
    complete_before: int | None,
    acked: Acked,
    until: int | None = None,
) -> Tail:
    """The :class:`Tail` of ``gatherer_id``'s journal under ``directory`` (blocking).

    ``acked(conn_ids)`` answers ``{(conn_id, table): frame_no}`` from the database. Frames
    received before ``complete_before`` are skipped (the watermark says they are stored);
    a ``gaps`` row is kept when its frame is after every table's acknowledged frame.
    ``until`` (µs): records from then on are not the previous run's (this run started
    then, its database unreachable: read later, its own journal follows) and are left."""
    paths = tail_files(directory / gatherer_id, complete_before)
    if not paths:
        return Tail()
    mark = -(2**62) if complete_before is None else complete_before
    stop = 2**62 if until is None else until
    done: dict[tuple[int, str], int] = {}
    if complete_before is None:
        # No watermark: skip the frames up to the newest one acknowledged. A table's
        # batches may commit out of order (two flushers), so with a watermark every frame
        # after it is kept instead: a frame below a committed one may be uncommitted.
        conns = sorted(  # a first pass: which connections have frames to check
            {
                i.conn_id
                for i in read_journal(paths)
                if isinstance(i, JournalRecord) and i.kind == "frame" and mark <= i.wall_us < stop
            }
        )
        done = acked(conns) if conns else {}
    newest: dict[int, int] = {}
    for (conn_id, _), frame_no in done.items():
        newest[conn_id] = max(newest.get(conn_id, -1), frame_no)
    replayer = Replayer()
    tail = Tail()
    for item in read_journal(paths):
        rows = replayer.feed(item)
        if not isinstance(item, JournalRecord):
            continue
        if item.wall_us < mark or item.wall_us >= stop:
            continue
        if item.kind != "frame":  # REST pages and gap rows: their keys drop stored ones
            tail.rows += rows
            continue
        if item.direction != "in":
            continue
        tail.end = item.wall_us if tail.end is None else max(tail.end, item.wall_us)
        for table, _ in rows:
            which = _TABLE_FIELD.get(table)
            if which is not None:
                tail.ends[which] = max(tail.ends.get(which, 0), item.wall_us)
        conn_id, frame_no = item.conn_id, item.frame_no
        if frame_no <= newest.get(conn_id, -1) and all(
            frame_no <= done.get((conn_id, table), -1) for table, _ in rows
        ):
            continue
        tail.frames += 1
        for table, row in rows:
            limit = newest.get(conn_id, -1) if table == "gaps" else done.get((conn_id, table), -1)
            if frame_no <= limit:
                continue
            tail.rows.append((table, row))
    tail.problems = sum(problem.lines for problem in replayer.stats.problems)
    return tail
