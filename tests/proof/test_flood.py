"""A feed faster than the database can take, with the database down: rows wait in bounded
memory, then on disk, and are all written once it is back. Nothing lost, memory bounded."""

from __future__ import annotations

from pathlib import Path

import orjson
import trio

from kalshi.auth import Signer, load_private_key
from kalshi.gather.service import Gatherer
from kalshi.journal import JournalRecord, read_journal
from kalshi.sim import open_sim_exchange
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for

MEMORY_ROWS = 500


async def test_the_database_down_under_a_flood_spools_to_disk_and_loses_nothing(
    own_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = own_pg.url
    migrate(url)
    async with open_sim_exchange(
        markets=40, active=20, rate=4000.0, seed=21, port=0, start_us=PINNED_START_US
    ) as sim:
        cfg = sim_config(
            sim,
            tmp_path,
            url,
            **{"spool.memory_rows": MEMORY_ROWS, "websocket.transport": "websockets"},
        )
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        gatherer = Gatherer(cfg, url, signer=signer)
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                assert gatherer.store is not None and gatherer.layout is not None
                await wait_for(lambda: all(c.state == "live" for c in gatherer.layout.connections))
                await trio.to_thread.run_sync(own_pg.stop_server)
                peak: dict[str, int] = {}
                for _ in range(40):  # 4 s of flood with the database down
                    await trio.sleep(0.1)
                    for name, table in gatherer.store.stats().tables.items():
                        peak[name] = max(peak.get(name, 0), table.queue_rows)
                # the exchange goes quiet; the writers settle with the database still down
                sim.engine.pause()
                await trio.sleep(1.0)
                stats = gatherer.store.stats()
                assert not stats.db_up
                deltas = stats.tables["orderbook_deltas"]
                spooled = deltas.spool_rows
                # memory: the channel, one open batch and MEMORY_ROWS of sealed batches at most
                writer = cfg.writers.orderbook_deltas
                bound = max(1024, 4 * writer.batch_size) + writer.batch_size + MEMORY_ROWS
                assert peak["orderbook_deltas"] <= bound, (peak, bound)
                # every row handed over is written, in memory or on disk: exactly
                handed = gatherer.ctx.sink.rows["orderbook_deltas"]  # type: ignore[union-attr]
                waiting = handed - deltas.rows_written
                assert waiting > bound  # more than memory may hold, so the rest is on disk
                assert spooled == waiting - deltas.queue_rows
                sim.engine.resume()
                await trio.to_thread.run_sync(own_pg.start)
                await wait_for(
                    lambda: all(
                        t.spool_rows == 0
                        for t in gatherer.store.stats().tables.values()  # type: ignore[union-attr]
                    )
                )
                sim.engine.pause()
                await trio.sleep(1.0)
                nursery.cancel_scope.cancel()

    journaled = set()
    for record in read_journal([tmp_path / "journal"]):
        assert isinstance(record, JournalRecord)
        incoming = record.kind == "frame" and record.direction == "in"
        if incoming and orjson.loads(record.raw).get("type") == "orderbook_delta":
            journaled.add((record.conn_id, record.frame_no))
    with connect_db(url) as db:
        stored = set(db.query("SELECT conn_id, frame_no FROM orderbook_deltas"))
    assert len(journaled) > spooled
    assert stored == journaled
