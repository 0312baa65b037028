"""The dedup tests' recordings are what ``kalshi replay`` writes of a gatherer's journal: the
records go through the real JournalWriter, are read back and replayed into a database, and
every table equals the recording's rows written by the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dedup_support import MISSES, write_recording

from kalshi.config import GathererConfig, SpoolConfig
from kalshi.journal import read_journal
from kalshi.replay import replay_into_db
from kalshi.testing.recording import make_truth, record
from tests.replay.replay_support import stored, write_journal


async def test_a_recording_is_what_replaying_its_journal_stores(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth = make_truth(3, events=200)
    rec = record(truth, "g2", MISSES["g2"], conn_base=3, latency_us=900)
    kinds = sorted({(g.kind, g.detail.partition(":")[0]) for g in rec.gaps})
    assert kinds == [("seq_gap", "orderbook_delta"), ("seq_gap", "trade")]
    entries = [
        ("marker", r.conn_id, r.kind, r.wall_us, r.detail)
        if r.kind != "frame"
        else (r.direction, r.conn_id, r.frame_no, r.wall_us, r.raw)
        for r in rec.journal
    ]
    files = await write_journal(tmp_path / "journal", entries, gatherer="g2")
    replayed = make_db()
    cfg = GathererConfig(
        gatherer_id="g2",
        spool=SpoolConfig(dir=str(tmp_path / "spool"), dead_letter_dir=str(tmp_path / "dead")),
    )
    stats = await replay_into_db(read_journal(files), replayed, cfg.store)
    assert stats.problems == [] and sum(stats.left.values()) == 0
    direct = make_db()
    await write_recording(direct, rec, tmp_path / "direct")
    assert stored(replayed) == stored(direct)
    assert len(stored(direct)["orderbook_deltas"]) == len(rec.orderbook_deltas) > 0
