"""Restart recovery: one gatherer, ``kill -9`` mid-burst, started again with the same config
and database. Every trade of the simulator exactly once, one ``outage`` gap per channel
spanning the down time, and the books equal the simulator's."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from kalshi.gather.recovery import last_frames
from kalshi.journal import JournalRecord, read_journal
from kalshi.models.rows import TABLE_COLUMNS
from kalshi.replay.core import Replayer
from kalshi.sim import open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US, free_port
from tests.gather.support import db_books, gatherer_processes, gatherer_yaml, wait_for
from tests.replay.replay_support import BASE_US, GATHERER, scripted_session, write_journal

CHANNELS = ("orderbook_delta", "trade", "ticker", "market_lifecycle_v2")
_LABEL_FIELD = {"trade": "trades", "orderbook": "orderbook", "ticker": "tickers"}
_FIELD_TABLES = {
    "trades": ("trades",),
    "orderbook": ("orderbook_deltas", "orderbook_snapshots"),
    "tickers": ("tickers",),
}


def _journaled(journal: Path) -> list[tuple[JournalRecord, list[tuple[str, Any]]]]:
    """Every ``in`` frame of the journal with the rows the live pipeline makes of it."""
    replayer = Replayer()
    out = []
    for item in read_journal([journal]):
        rows = replayer.feed(item)
        if isinstance(item, JournalRecord) and item.kind == "frame" and item.direction == "in":
            out.append((item, rows))
    return out


def _journal_ends(journal: Path) -> dict[str, int]:
    """Per LastRun field, the receive time of the journal's last frame making its rows."""
    ends: dict[str, int] = {}
    for item, rows in _journaled(journal):
        for field, tables in _FIELD_TABLES.items():
            if any(table in tables for table, _ in rows):
                ends[field] = item.wall_us
    return ends


def _config(
    sim: Any,
    tmp_path: Path,
    db_url: str,
    port: int,
    writers: dict[str, Any] | None = None,
    *,
    poller: bool = False,
) -> Path:
    return gatherer_yaml(
        sim,
        tmp_path,
        db_url,
        writers=writers
        or {"trades": {"flush_interval": "50ms"}, "orderbook_deltas": {"flush_interval": "50ms"}},
        snapshot_poller={"enabled": poller, "interval": "1s"},
        http={"port": port},
    )


async def _all_live(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            doc = (await client.get(f"http://127.0.0.1:{port}/health")).json()
    except httpx.HTTPError:
        return False
    return bool(doc["connections"]) and all(c["state"] == "live" for c in doc["connections"])


async def _wait_live(port: int) -> None:
    while not await _all_live(port):  # noqa: ASYNC110 - another process's /health
        await trio.sleep(0.05)


def _count(db_url: str, statement: str) -> int:
    with connect_db(db_url) as db:
        return int(db.query(statement)[0][0])


def _statuses(db_url: str, *tickers: str) -> dict[str, str]:
    with connect_db(db_url) as db:
        rows = db.query(
            "SELECT ticker, status FROM markets WHERE ticker = ANY(%s)", [list(tickers)]
        )
    return {ticker: status for ticker, status in rows}


async def test_kill_9_then_restart_loses_and_doubles_nothing(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=30, active=15, rate=400.0, seed=17, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()  # trades before the recorder is subscribed cannot be recorded
        port = free_port()
        path = _config(sim, tmp_path, db_url, port)
        async with gatherer_processes(path) as start:
            with trio.fail_after(120):
                first = await start()
                await _wait_live(port)
                before = len(sim.truth.trades)
                sim.engine.resume()
                # mid-burst: trades are being written when the process dies
                await wait_for(
                    lambda: (
                        _count(db_url, "SELECT count(*) FROM trades") >= 150
                        and len(sim.truth.trades) >= before + 250
                    )
                )
                first.kill()  # SIGKILL: no flush, no shutdown code
                await first.wait()
                killed_at = len(sim.truth.trades)
                ends = _journal_ends(tmp_path / "journal")
                await wait_for(
                    lambda: len(sim.truth.trades) >= killed_at + 200
                )  # traded while down
                restart_at = len(sim.truth.trades)
                second = await start()
                await _wait_live(port)
                await wait_for(lambda: len(sim.truth.trades) >= killed_at + 400)
                sim.engine.pause()
                expected = {t.trade_id for t in sim.truth.trades[before:]}
                await wait_for(
                    lambda: (
                        _count(db_url, "SELECT count(DISTINCT trade_id) FROM trades")
                        >= len(expected)
                        and _count(db_url, "SELECT count(*) FROM gaps WHERE kind = 'outage'") == 5
                        and all(
                            db_books(db_url).get(t) == sim.truth.book(t)
                            for t in sim.engine.active_tickers
                        )
                    )
                )
                second.send_signal(signal.SIGTERM)
                assert await second.wait() == 0
        truth = sim.truth
    assert first.returncode == -signal.SIGKILL
    with connect_db(db_url) as db:
        stored = db.query("SELECT trade_id, count(*) FROM trades GROUP BY trade_id")
        outages = db.query(
            "SELECT detail, start_ts, end_ts FROM gaps WHERE kind = 'outage' ORDER BY detail"
        )
        sources = dict(db.query("SELECT trade_id, source FROM trades"))
    assert {tid: n for tid, n in stored} == {t.trade_id: 1 for t in truth.trades[before:]}
    # made while no gatherer ran: they came back over REST
    down = truth.trades[killed_at:restart_at]
    assert len(down) >= 200
    assert {sources[t.trade_id] for t in down} == {"rest"}
    assert [d.split(":")[0] for d, _, _ in outages] == [
        "combo-lifecycle-0",
        "lifecycle-0",
        "orderbook-0",
        "ticker-0",
        "trade-0",
    ]
    # the outage starts where the first run's journal ends (its rows are all stored)
    killed_us = max(t.exchange_ts for t in truth.trades[:killed_at])
    for detail, start, end in outages:
        label = detail.split(":")[0].split("-")[0]
        if label in _LABEL_FIELD:  # the journaled frames are not in it
            assert ends[_LABEL_FIELD[label]] <= start, detail
        assert start < end
        assert killed_us < end  # each spans the down time
    books = db_books(db_url)
    for ticker in sim.engine.active_tickers:
        assert books[ticker] == truth.book(ticker), ticker


# The columns compared per table: each row's key, where it came from and its values.
_COMPARED = {
    "tickers": ("exchange_ts", "received_at", "conn_id", "frame_no", "ticker", "yes_bid", "volume"),
    "trades": ("exchange_ts", "received_at", "conn_id", "frame_no", "trade_id", "price", "size"),
    "orderbook_deltas": (
        "exchange_ts",
        "received_at",
        "conn_id",
        "frame_no",
        "ticker",
        "price",
        "size_delta",
    ),
}


def _journaled_rows(journal: Path) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _COMPARED}
    for _, rows in _journaled(journal):
        for table, row in rows:
            if table in out:
                out[table].append(tuple(getattr(row, c) for c in _COMPARED[table]))
    return out


def _stored_rows(db_url: str, table: str, conns: list[int]) -> list[tuple[Any, ...]]:
    columns = ", ".join(_COMPARED[table])
    ws = " AND source = 'ws'" if table == "trades" else ""
    with connect_db(db_url) as db:
        return db.query(f"SELECT {columns} FROM {table} WHERE conn_id = ANY(%s){ws}", [conns])


async def test_kill_9_before_a_commit_the_restart_writes_the_journal_tail(
    db_url: str, tmp_path: Path
) -> None:
    # The first run's rows wait in its writers' memory: tickers never flushed, trades and
    # deltas only in whole batches. kill -9 loses that memory, not the journal.
    writers = {
        "tickers": {"batch_size": 100_000, "flush_interval": "1h"},
        "trades": {"batch_size": 40, "flush_interval": "1h"},
        "orderbook_deltas": {"batch_size": 300, "flush_interval": "1h"},
    }
    journal = tmp_path / "journal"
    async with open_sim_exchange(
        markets=30, active=15, rate=400.0, seed=23, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()
        port = free_port()
        path = _config(sim, tmp_path, db_url, port, writers)
        async with gatherer_processes(path) as start:
            with trio.fail_after(120):
                first = await start()
                await _wait_live(port)
                sim.engine.resume()

                def journaled_enough() -> bool:
                    rows = _journaled_rows(journal)
                    return (
                        len(rows["tickers"]) >= 20
                        and len(rows["trades"]) >= 100
                        and len(rows["orderbook_deltas"]) >= 400
                    )

                await wait_for(journaled_enough, step=0.2)
                first.kill()  # SIGKILL: the batches in memory are gone
                await first.wait()
                sim.engine.pause()
                frames = _journaled(journal)
                conns = sorted({item.conn_id for item, _ in frames})
                expected = _journaled_rows(journal)
                ends = _journal_ends(journal)
                # journaled, not in the database: what the restart must write (the
                # database may also hold rows of frames still in the journal's memory)
                stored = {t: _stored_rows(db_url, t, conns) for t in _COMPARED}
                assert stored["tickers"] == []
                assert len(expected["tickers"]) >= 20
                # the same gatherer, its writers flushing as usual (the tail is committed
                # before recording starts: a flush, not a clean stop, writes it)
                _config(sim, tmp_path, db_url, port)
                second = await start()
                await _wait_live(port)
                second.send_signal(signal.SIGTERM)
                assert await second.wait() == 0
    assert first.returncode == -signal.SIGKILL
    for table in _COMPARED:  # every journaled row exactly once, as the live pipeline made it
        want = sorted(set(expected[table]) | set(stored[table]))
        assert len(want) == len(expected[table]) + len(set(stored[table]) - set(expected[table]))
        assert sorted(_stored_rows(db_url, table, conns)) == want, table
    with connect_db(db_url) as db:
        doubled = db.query("SELECT trade_id FROM trades GROUP BY trade_id HAVING count(*) > 1")
        outages = db.query("SELECT detail, start_ts FROM gaps WHERE kind = 'outage'")
    assert doubled == []
    starts = {d.split(":")[0].split("-")[0]: start for d, start in outages}
    # only what was never journaled is an outage: the tickers' (none of which the first
    # run stored) starts where the journal's tickers end; no channel's before that
    assert starts["ticker"] == ends["tickers"]
    for label, field in _LABEL_FIELD.items():
        assert starts[label] >= ends[field], label


# Each table's content, compared whole.
_CONTENT = {
    "trades": "*",  # the first copy received of a trade (WebSocket or REST), in both
    "orderbook_deltas": "*",
    "orderbook_snapshots": "snapshot_ts, ticker, source, yes_bids::text, no_bids::text,"
    " conn_id, frame_no",
    "tickers": "*",
    "market_lifecycle": "exchange_ts, received_at, ticker, event_type, conn_id, frame_no",
    "gaps": "*",
    # the registry's markets; updated_at is when the live gatherer handled a lifecycle
    # frame, the frame's receipt in a replay
    "markets": "ticker, event_ticker, status, market_type, title, open_time, close_time,"
    " gatherer_id, payload::text",
}


def _content(url: str, table: str) -> Counter[tuple[Any, ...]]:
    # "*": the row's columns, not ingest_xid (the id of the transaction that wrote it,
    # migration 009: another database, other transactions)
    columns = _CONTENT[table]
    if columns == "*":
        columns = ", ".join(TABLE_COLUMNS[table])
    with connect_db(url) as db:
        return Counter(db.query(f"SELECT {columns} FROM {table}"))


async def test_a_database_rebuilt_from_the_journal_equals_the_original(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    # A run, a stop, trades while down, a restart: the original holds WebSocket rows, the
    # trades backfilled over REST and the books polled over REST (source 'rest'), and the
    # gatherer's outage gaps.
    async with open_sim_exchange(
        markets=30, active=15, rate=400.0, seed=29, port=0, start_us=PINNED_START_US
    ) as sim:
        sim.engine.pause()
        port = free_port()
        path = _config(sim, tmp_path, db_url, port, poller=True)
        async with gatherer_processes(path) as start:
            with trio.fail_after(120):
                for run in range(2):
                    proc = await start()
                    await _wait_live(port)
                    made = len(sim.truth.trades)
                    sim.engine.resume()
                    await wait_for(
                        lambda: (
                            len(sim.truth.trades) >= made + 150  # noqa: B023
                            and _count(
                                db_url,
                                "SELECT count(*) FROM orderbook_snapshots WHERE source = 'rest'",
                            )
                            > 0
                        )
                    )
                    if run == 1:
                        # a market opens during the recording (at its open_time, with no
                        # lifecycle event: the gatherer's registry opens it, kalshi-api.md
                        # §5) and one settles (finalized): the replay's registry does both
                        settled = sorted(sim.engine.active_tickers)[0]
                        sim.settle_market(settled)
                        opening = sim.add_market(open_in_s=2, trade=False)
                        await wait_for(
                            lambda: (
                                _statuses(db_url, opening, settled)  # noqa: B023
                                == {opening: "active", settled: "finalized"}  # noqa: B023
                            )
                        )
                    if run == 0:
                        # kill -9 whatever the journal still holds in memory: no row is
                        # stored before its frame is on the journal's disk (Store.follow)
                        proc.kill()  # SIGKILL: the restart recovers from the journal
                        assert await proc.wait() == -signal.SIGKILL
                        made = len(sim.truth.trades)
                        await wait_for(lambda: len(sim.truth.trades) >= made + 100)  # noqa: B023
                    sim.engine.pause()
                expected = {t.trade_id for t in sim.truth.trades}
                await wait_for(
                    lambda: (
                        _count(db_url, "SELECT count(DISTINCT trade_id) FROM trades")
                        >= len(expected)
                    )
                )
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
    replay = await trio.run_process(
        [sys.executable, "-m", "kalshi", "replay", str(tmp_path / "journal"), "--db", other_db_url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=tmp_path,  # its spool
    )
    assert replay.returncode == 0, replay.stderr.decode()
    assert _count(db_url, "SELECT count(*) FROM trades WHERE source = 'rest'") > 0
    assert _count(db_url, "SELECT count(*) FROM gaps WHERE kind = 'outage'") == 5
    assert _count(db_url, "SELECT count(*) FROM orderbook_snapshots WHERE source = 'rest'") > 0
    for table in _CONTENT:  # table by table, every row
        original, rebuilt = _content(db_url, table), _content(other_db_url, table)
        assert rebuilt == original, (table, original - rebuilt, rebuilt - original)
    # what the replay says it committed is what the (fresh) database holds, table by table
    report = _report(replay.stdout.decode())
    with connect_db(other_db_url) as db:
        assert report["committed (new rows)"] == {t: n for t, n in db.counts().items() if n}
    # and every row it made is committed, skipped as stored or an update: nothing else
    made = report["rows"]
    accounted = Counter(report["committed (new rows)"])
    accounted.update(report.get("already stored (skipped)", {}))
    accounted.update(report.get("updated (a newer version of a stored row)", {}))
    assert accounted == made


def _report(stdout: str) -> dict[str, dict[str, int]]:
    """The ``<label>: <table> <n>, ...`` lines of ``kalshi replay``'s summary."""
    out: dict[str, dict[str, int]] = {}
    for line in stdout.splitlines():
        if line.startswith("replayed "):
            line = "rows:" + line.split("; rows:", 1)[1]
        label, sep, rest = line.partition(": ")
        if sep and label in _SUMMARY_LABELS:
            pairs = (part.rsplit(" ", 1) for part in rest.split(", ") if rest != "none")
            out[label] = {table: int(n.replace(",", "")) for table, n in pairs}
    return out


_SUMMARY_LABELS = (
    "rows",
    "committed (new rows)",
    "already stored (skipped)",
    "updated (a newer version of a stored row)",
)


async def test_without_its_database_the_previous_end_comes_from_the_journal(
    tmp_path: Path,
) -> None:
    # The fallback when the database cannot be read at start: the last frame received
    # per channel in the newest journal files.
    await write_journal(tmp_path / "journal", scripted_session())
    assert last_frames(tmp_path / "journal", GATHERER) == {
        "orderbook_delta": BASE_US + 900,  # frame 9 of the order-book connection
        "trade": BASE_US + 350,  # frame 3 of the trade connection
    }
    assert last_frames(tmp_path / "journal", "someone-else") == {}
