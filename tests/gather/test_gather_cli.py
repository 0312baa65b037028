"""`kalshi gather` as a process: SIGTERM during a burst exits 0 and loses no row."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import trio

import kalshi
from kalshi.journal import JournalRecord, read_journal
from kalshi.sim import SimExchange, open_sim_exchange
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import gatherer_yaml

SQL = Path(kalshi.__file__).parent / "sql"


async def test_sigterm_mid_burst_flushes_every_row(db_url: str, tmp_path: Path) -> None:
    async with open_sim_exchange(
        markets=40, active=20, rate=3000.0, seed=11, port=0, start_us=PINNED_START_US
    ) as sim:
        path = gatherer_yaml(
            sim,
            tmp_path,
            db_url,
            gatherer_id="cli-1",
            kalshi={"rest_rate_limit": 100},
            journal={"compress": True},
        )
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "kalshi", "gather", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        with trio.fail_after(60):
            # the order-book subscriptions are under way (their listing and subscribing can
            # take longer than the first trades and tickers, on a loaded machine)
            while sim.truth.events_generated.total() < 3000 or _book_messages(sim) < 200:  # noqa: ASYNC110
                await trio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
        assert proc.stderr is not None and proc.stdout is not None
        err = b""
        while chunk := await proc.stderr.receive_some(65536):
            err += chunk
        out = b""
        while chunk := await proc.stdout.receive_some(65536):
            out += chunk
        assert code == 0, err.decode()
    # what the process said it received: "stopped; N frames received (..., orderbook_delta K, ...)"
    said = re.search(rb"orderbook_delta (\d+)", out)
    assert said is not None, (out, err)

    deltas = set()
    for record in read_journal([tmp_path / "journal"]):
        assert isinstance(record, JournalRecord)
        if record.kind == "frame" and record.direction == "in":
            frame = orjson.loads(record.raw)
            if frame.get("type") == "orderbook_delta":
                deltas.add((record.conn_id, record.frame_no))
    with connect_db(db_url) as db:
        stored = set(db.query("SELECT conn_id, frame_no FROM orderbook_deltas"))
    assert len(deltas) == int(said.group(1))  # every delta it decoded was journaled first
    assert stored == deltas


def _book_messages(sim: SimExchange) -> int:
    """Order-book messages (snapshots and deltas) the simulator has sequenced so far."""
    return sum(
        sub.seq for s in sim.sessions for sub in s.subs.values() if sub.channel == "orderbook_delta"
    )


def _deltas_journaled(tmp_path: Path) -> bool:
    return any((tmp_path / "journal").rglob("*.jsonl*"))


async def test_debug_level_logs_no_credentials_and_no_library_flood(
    empty_db_url: str, tmp_path: Path
) -> None:
    # Outside tester F3: at logging.level debug, websockets logged every frame and the signed
    # upgrade request's KALSHI-ACCESS-KEY and KALSHI-ACCESS-SIGNATURE headers. F10a: each
    # migration was logged twice, by kalshi.store and by kalshi.cli.
    db_url = empty_db_url
    async with open_sim_exchange(
        markets=10, active=5, rate=500.0, seed=3, port=0, start_us=PINNED_START_US
    ) as sim:
        path = gatherer_yaml(sim, tmp_path, db_url, logging={"level": "debug"})
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "kalshi", "gather", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        with trio.fail_after(60):
            while not _deltas_journaled(tmp_path):  # every connection signed its upgrade  # noqa: ASYNC110
                await trio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
        assert proc.stderr is not None
        err = b""
        while chunk := await proc.stderr.receive_some(65536):
            err += chunk
    assert code == 0, err.decode()
    text = err.decode()
    assert "KALSHI-ACCESS" not in text and sim.key_id not in text
    # "date time LEVEL logger: message": below warning, only our own loggers speak
    chatty = set(re.findall(r"^\S+ \S+ (?:DEBUG|INFO) (\S+):", text, re.MULTILINE))
    assert chatty and all(name.startswith("kalshi") for name in chatty), chatty
    applied = re.findall(r"^\S+ \S+ INFO (\S+): applied migration (\S+)$", text, re.MULTILINE)
    assert applied == [("kalshi.store", sql.name) for sql in sorted(SQL.glob("*.sql"))]


async def test_a_taken_port_fails_before_anything_is_written(db_url: str, tmp_path: Path) -> None:
    # Tester F7: a taken http.port was reported only after the store, the journal and the
    # previous run's outage step had written (a watermark row, the spool, the journal).
    async with open_sim_exchange(markets=4, active=2, seed=3, port=0) as sim:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            port = squatter.getsockname()[1]
            path = gatherer_yaml(sim, tmp_path, db_url, gatherer_id="cli-port", http={"port": port})
            with trio.fail_after(60):
                done = await trio.run_process(
                    [sys.executable, "-m", "kalshi", "gather", "--config", str(path)],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        1,
        b"",
        f"error: /health (http.port): cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )
    assert not (tmp_path / "spool").exists() and not (tmp_path / "journal").exists()
    with connect_db(db_url) as db:
        marks = db.query("SELECT count(*) FROM ingest_watermark WHERE gatherer_id = 'cli-port'")
    assert marks == [(0,)]
