"""The scale run (``just scale``): the whole system at full size, measured, then checked
against the simulator's ground truth.

Everything is real: the simulator (in a process of its own, ``simproc.py``) with ``markets``
markets, two ``kalshi gather`` processes (``replicas``; one to measure a single gatherer)
with the seed's layout (150 WebSocket connections each), each with its own embedded
PostgreSQL, a ``kalshi dedup`` process merging both into production
(on the first server) and exporting Parquet to a local S3 server (``weed``). No fault is
injected: every reconnect is a failure. The engine is paused until both gatherers have
subscribed everything and hold every book (time to subscribed / to books is measured
without traffic), then runs ``minutes`` minutes with bursts and market churn.

Figures (all in the returned document, written as JSON by ``benchmarks/scale.py``):
time to all subscribed / all books; per process CPU seconds and peak RSS; exchange →
committed latency (now − newest committed ``exchange_ts`` of ``orderbook_deltas``, sampled
every second) p50/p99/max in quiet periods and in bursts; max queue and spool; rows per
table; journal, database and Parquet bytes per hour and per day; reconnects; trades lost
and duplicated and books unequal (each must be 0).
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
import yaml

from kalshi.dedup import production_books
from kalshi.errors import BookError, StoreError
from kalshi.ports import free_port
from kalshi.store import Database, EmbeddedPostgres, connect_db, migrate
from kalshi.testing.procs import Child, get_health, scratch_dir
from kalshi.testing.s3server import S3Server

from .diagnose import unequal_detail
from .procstat import cpu_seconds, peak_rss_mib, rss_mib
from .simproc import SimProcess

__all__ = ["run_scale"]

BUCKET = "kalshi-scale"
REPLICAS = ("g1", "g2")  # two redundant gatherers, each with its own PostgreSQL


def gatherer_names(shards: int, replicas: int = 2) -> list[str]:
    """``g1``, ``g2``; sharded: ``g1s0`` ... ``g2s<n-1>`` (one process per shard)."""
    if shards == 1:
        return list(REPLICAS[:replicas])
    return [f"{replica}s{i}" for replica in REPLICAS[:replicas] for i in range(shards)]


_SAMPLE = 1.0  # seconds between two samples


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class _Samples:
    """What the monitor saw, second by second."""

    def __init__(self) -> None:
        self.health: dict[str, dict[str, Any] | None] = {}
        self.lag: dict[str, list[float]] = {"quiet": [], "burst": []}
        # the newest committed row's lag split where the gatherer stamped it: exchange ->
        # received (the simulator's outbox, the sockets, the gatherer's reading) and
        # received -> committed (the gatherer's queues and the database)
        self.read_lag: list[float] = []
        self.write_lag: list[float] = []
        self.sim_outbox: list[int] = []  # bytes the simulator's sessions have not sent
        self.sim_late: list[float] = []  # how late the simulator's engine ran (s)
        self.max_queue: dict[str, int] = {}
        self.max_spool: dict[str, int] = {}
        self.max_read_ahead: dict[str, int] = {}  # frames a whole-exchange socket read ahead
        self.peak_rss: dict[str, float] = {}
        self.measuring = False

    def tables(self, name: str) -> dict[str, Any]:
        return (self.health.get(name) or {}).get("tables") or {}

    def all_live(self, name: str) -> bool:
        conns = (self.health.get(name) or {}).get("connections") or []
        return bool(conns) and all(c.get("state") == "live" for c in conns)

    def all_books(self, name: str) -> bool:
        markets = (self.health.get(name) or {}).get("markets") or {}
        return (
            self.all_live(name)
            and markets.get("stale", 1) == 0
            and markets.get("books", 0) >= markets.get("live", 1) > 0
        )

    def settled(self, name: str) -> bool:
        """Every book held, nothing queued or spooled, no frame read ahead unhandled."""
        tables = self.tables(name).values()
        conns = (self.health.get(name) or {}).get("connections") or []
        return (
            self.all_books(name)
            and not any(t.get("queue", 0) or t.get("spool_rows", 0) for t in tables)
            and not any(c.get("read_ahead") for c in conns)
        )

    def live(self, names: list[str]) -> int:
        """Markets the gatherers ``names`` (one gatherer's shards) hold as live together."""
        return sum(((self.health.get(n) or {}).get("markets") or {}).get("live", 0) for n in names)

    def received(self, name: str) -> int:
        """Text frames the gatherer ``name`` has read, over all its connections."""
        conns = (self.health.get(name) or {}).get("connections") or []
        return sum(c.get("messages", 0) for c in conns)

    def reconnects(self, name: str) -> int:
        conns = (self.health.get(name) or {}).get("connections") or []
        return sum(c.get("reconnects", 0) for c in conns)


async def run_scale(
    workdir: Path,
    *,
    minutes: float = 30.0,
    markets: int = 250_000,
    active: int = 5_000,
    rate: float = 2_000.0,
    busy: int = 300,
    burst_every: float = 180.0,
    shards: int = 1,
    replicas: int = 2,
    seed: int = 11,
    start_us: int | None = None,
    startup_limit: float = 900.0,
    live_dedup: bool = True,
    gatherer_set: dict[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the scale test; returns the figures and ``failures`` (empty when it passed).

    ``live_dedup=False``: the deduplicator does not run beside the gatherers (where it runs
    in production, on a host of its own), only its final ``--once`` pass before the
    checks: on this 2-core machine, merging the start-up's 188 720 snapshots and 250 000
    markets took half a core from a gatherer asked for 20 000 msgs/s."""
    await trio.to_thread.run_sync(lambda: workdir.mkdir(parents=True, exist_ok=True))
    doc: dict[str, Any] = {
        "markets": markets,
        "active": active,
        "rate": rate,
        "busy": busy,
        "burst_every_s": burst_every,
        "minutes": minutes,
        "shards": shards,
        "gatherers": replicas,
        "live_dedup": live_dedup,
        "gatherer_set": dict(gatherer_set or {}),
        "failures": [],
    }
    failures: list[str] = doc["failures"]
    names = gatherer_names(shards, replicas)
    replica_names = REPLICAS[:replicas]
    servers = {
        name: EmbeddedPostgres(scratch_dir(f"kalshi-scale-{name}-") / "pg")
        for name in replica_names
    }
    for pg in servers.values():
        await trio.to_thread.run_sync(pg.start)
    urls = {name: servers[name[:2]].url_for(f"scale_{name}") for name in names}
    urls["prod"] = servers["g1"].url_for("scale_prod")
    s3 = S3Server(workdir / "s3")
    children: dict[str, Child] = {}
    final: Child | None = None
    truth_path = workdir / "truth.jsonl"
    sim = SimProcess(
        {
            "markets": markets,
            "active": active,
            "rate": rate,
            "seed": seed,
            "start_us": start_us,
            "trade_window_s": 900.0,
            "busy": busy,
            "burst_every": burst_every,
            "lifecycle_every": 60.0,
            # gatherers of 150 connections on one key: a tier above Basic's 200 per user
            # (kalshi-api.md §2.6), or one key per gatherer
            "connections_per_user": 160 * len(names),
            # the simulator shares the CPU with every process of the run: at full size a
            # handshake can wait seconds for its event loop, longer than the exchange's
            # 5 s signature window is meant to cover
            "skew_s": 60.0,
        },
        truth_path,
        workdir / "sim.log",
    )
    try:
        for name, url in urls.items():
            server = servers["g2" if name.startswith("g2") else "g1"]
            with connect_db(server.url_for("postgres")) as db:
                db.execute(f'DROP DATABASE IF EXISTS "scale_{name}" WITH (FORCE)')
                db.execute(f'CREATE DATABASE "scale_{name}"')
            await trio.to_thread.run_sync(migrate, url)
        await trio.to_thread.run_sync(s3.start)
        s3.create_bucket(BUCKET)
        await sim.start()
        doc["sim_niceness"] = sim.priority
        doc["markets_live_at_exchange"] = sim.markets_live
        await _record(sim, names, urls, workdir, s3, children, doc, startup_limit, minutes, say)
        status, active_books = await sim.finish(workdir / "books.json")
        doc["messages_generated"] = status["generated"]
        doc["bursts"] = status["bursts"]
        doc["undelivered"] = status["undelivered"]
        final = Child(
            "dedup-once",
            ["dedup", "--config", str(workdir / "dedup.yaml"), "--once"],
            workdir / "dedup.log",
        )
        await final.start()
        code = await final.wait()
        if code != 0:
            failures.append(f"dedup --once exited {code}")
        await trio.to_thread.run_sync(_verify, doc, urls, truth_path, active_books)
        await trio.to_thread.run_sync(_volumes, doc, urls, workdir, s3)
    finally:
        with trio.CancelScope(shield=True):  # no child outlives the run, no log stays open
            for child in [*children.values(), *([final] if final else [])]:
                if child.proc is not None:
                    await child.stop(signal.SIGKILL)
            await sim.stop()
            await trio.to_thread.run_sync(s3.stop)
            for pg in servers.values():
                await trio.to_thread.run_sync(pg.stop)
                # the servers' data (GBs at full size) goes with them; the workdir stays
                await trio.to_thread.run_sync(
                    functools.partial(shutil.rmtree, pg.data_dir.parent, ignore_errors=True)
                )
    return doc


async def _record(
    sim: SimProcess,
    names: list[str],
    urls: dict[str, str],
    workdir: Path,
    s3: S3Server,
    children: dict[str, Child],
    doc: dict[str, Any],
    startup_limit: float,
    minutes: float,
    say: Callable[[str], None],
) -> None:
    """Start the gatherers, wait for them, record ``minutes`` of traffic, stop them."""
    failures: list[str] = doc["failures"]
    key = workdir / "key.pem"
    key.write_bytes(sim.private_key_pem)
    postgres = {name[:2] for name in names}
    ports = {name: free_port() for name in names}
    for name in names:
        path = workdir / f"{name}.yaml"
        shard = f"{name[3:]}/{len(names) // len(postgres)}" if len(name) > 2 else "0/1"
        config = _gatherer_config(name, sim, key, urls[name], workdir, ports[name], shard)
        for dotted, value in doc["gatherer_set"].items():  # --set KEY=VALUE
            *sections, last = dotted.split(".")
            section = config
            for part in sections:
                section = section.setdefault(part, {})
            section[last] = value
        path.write_text(yaml.safe_dump(config))
        children[name] = Child(
            name, ["gather", "--config", str(path)], workdir / f"{name}.log", own_session=True
        )
    (workdir / "dedup.yaml").write_text(yaml.safe_dump(_dedup_config(names, urls, s3)))
    children["dedup"] = Child(
        "dedup",
        ["dedup", "--config", str(workdir / "dedup.yaml")],
        workdir / "dedup.log",
        own_session=True,
    )
    samples = _Samples()
    replicas = sorted({name[:2] for name in names})
    name_tail = "" if len(names) == len(replicas) else "s0"
    postmasters = {replica: _postmaster(urls[f"{replica}{name_tail}"]) for replica in replicas}
    lag_dbs = {name: connect_db(urls[name]) for name in names}
    try:
        async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
            nursery.start_soon(_monitor, client, ports, samples, children, lag_dbs, sim)
            started = trio.current_time()
            for name in names:
                await children[name].start()
            subscribed: dict[str, float] = {}
            books: dict[str, float] = {}
            expected: int = doc["markets_live_at_exchange"]

            def listed(name: str) -> bool:  # every live market listed by this gatherer's shards
                return samples.live([n for n in names if n[:2] == name[:2]]) >= expected

            with trio.move_on_after(startup_limit):
                while len(books) < len(names):
                    for name in names:
                        if name not in subscribed and listed(name) and samples.all_live(name):
                            subscribed[name] = trio.current_time() - started
                        if name not in books and listed(name) and samples.all_books(name):
                            books[name] = trio.current_time() - started
                    await trio.sleep(0.2)
            doc["seconds_to_all_subscribed"] = {k: round(v, 1) for k, v in subscribed.items()}
            doc["seconds_to_all_books"] = {k: round(v, 1) for k, v in books.items()}
            doc["markets_subscribed"] = {
                n: ((samples.health.get(n) or {}).get("markets") or {}).get("live") for n in names
            }
            say(f"subscribed {subscribed}  books {books} (seconds)")
            if len(books) < len(names):
                failures.append(f"not every book within {startup_limit:.0f} s: {books}")
                nursery.cancel_scope.cancel()
                return
            # The recording starts from a settled gatherer: the snapshots of startup written,
            # nothing queued or spooled. Otherwise the start's writes compete with the first
            # minute of traffic and the sustained rate measures the startup's tail.
            settled: dict[str, float] = {}
            with trio.move_on_after(startup_limit):
                while len(settled) < len(names):
                    for name in names:
                        if name not in settled and samples.settled(name):
                            settled[name] = trio.current_time() - started
                    await trio.sleep(0.2)
            doc["seconds_to_settled"] = {k: round(v, 1) for k, v in settled.items()}
            if len(settled) < len(names):
                failures.append(f"not settled within {startup_limit:.0f} s: {settled}")
                nursery.cancel_scope.cancel()
                return
            if doc["live_dedup"]:
                await children["dedup"].start()
            reconnects_before = {n: samples.reconnects(n) for n in names}
            cpu_before = _cpu(children, postmasters, sim=sim)
            busy_before = _machine_busy()
            doc["bytes_at_start"] = await trio.to_thread.run_sync(_sizes, urls, workdir, s3)
            generated_before = (await sim.status())["generated"]
            await sim.resume()
            samples.measuring = True
            begin = time.monotonic()
            say(f"recording {minutes:g} min at {doc['rate']:g} msgs/s")
            await trio.sleep(minutes * 60)
            await sim.pause()
            samples.measuring = False
            doc["seconds_measured"] = round(time.monotonic() - begin, 1)
            generated = (await sim.status())["generated"] - generated_before
            doc["achieved_rate"] = round(generated / max(1.0, doc["seconds_measured"]), 1)
            cpu_after = _cpu(children, postmasters, sim=sim)
            busy = _machine_busy() - busy_before
            doc["sim_cpu_seconds_while_recording"] = round(cpu_after["sim"] - cpu_before["sim"], 1)
            doc["cores_while_recording"] = _cores(
                cpu_before, cpu_after, busy, doc["seconds_measured"]
            )
            # Stopped only once every frame the exchange sent is read and its rows written:
            # a gatherer reading seconds late (a loaded machine) still has frames in its
            # sockets when its queues are empty, and a SIGTERM then ends it without them;
            # the exchange's books would be compared with rows no gatherer could have had.
            say("quiet; waiting for every frame to be read and every row to be written")
            sent = received = 0
            with trio.move_on_after(300) as waited:
                while True:
                    sent = (await sim.status())["frames_sent"]
                    received = sum(samples.received(n) for n in names)
                    # (a reconnect drops what its session still queued: not counted then)
                    read = received >= sent or any(
                        samples.reconnects(n) > reconnects_before[n] for n in names
                    )
                    if read and all(samples.settled(n) for n in names):
                        break
                    await trio.sleep(0.3)
            doc["frames_sent"] = sent
            doc["frames_read"] = {n: samples.received(n) for n in names}
            if waited.cancelled_caught:
                failures.append(
                    f"gatherers did not settle within 300 s after the traffic"
                    f" (read {received} of {sent} frames)"
                )
            doc["seconds_to_settle"] = round(time.monotonic() - begin - doc["seconds_measured"], 1)
            await trio.sleep(2 * _SAMPLE)
            doc["reconnects"] = {n: samples.reconnects(n) - reconnects_before[n] for n in names}
            doc["reconnects_during_startup"] = reconnects_before
            doc["cpu_seconds"] = _cpu(children, postmasters, sim=sim)
            peak = samples.peak_rss
            doc["peak_rss_mib"] = {n: peak[n] for n in children if n in peak}
            assert sim.proc is not None
            doc["peak_rss_mib"]["sim"] = round(peak_rss_mib(sim.proc.pid), 1)
            doc["peak_rss_mib"]["harness"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            )
            doc["postgres_rss_mib_at_end"] = {
                n: round(rss_mib(pid), 1) for n, pid in postmasters.items()
            }
            doc["max_queue_rows"] = samples.max_queue
            doc["max_spool_rows"] = samples.max_spool
            doc["max_read_ahead_frames"] = samples.max_read_ahead
            lag = samples.lag
            doc["latency_split_s"] = {
                what: {"p50": _percentile(values, 0.5), "p99": _percentile(values, 0.99)}
                for what, values in (
                    ("exchange_to_received", samples.read_lag),
                    ("received_to_committed", samples.write_lag),
                )
            }
            outbox = [v / 2**20 for v in samples.sim_outbox]
            doc["sim_outbox_mib"] = {
                "p50": round(_percentile(outbox, 0.5) or 0.0, 1),
                "max": round(max(outbox, default=0.0), 1),
            }
            doc["sim_engine_late_s"] = {
                "p50": _percentile(samples.sim_late, 0.5),
                "p99": _percentile(samples.sim_late, 0.99),
            }
            doc["latency_s"] = {
                phase: {
                    "samples": len(values),
                    "p50": _percentile(values, 0.5),
                    "p99": _percentile(values, 0.99),
                    "max": round(max(values), 3) if values else None,
                }
                for phase, values in lag.items()
            }
            for name in names:
                code = await children[name].stop(signal.SIGTERM, grace=120)
                if code != 0:
                    failures.append(f"{name} exited {code} on SIGTERM")
            if doc["live_dedup"]:
                code = await children["dedup"].stop(signal.SIGTERM, grace=120)
                if code != 0:
                    failures.append(f"dedup exited {code} on SIGTERM")
            nursery.cancel_scope.cancel()
    finally:
        for db in lag_dbs.values():
            db.close()
    if any(doc.get("reconnects", {}).values()):
        failures.append(f"reconnects without faults: {doc['reconnects']}")


def _machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy since boot (``/proc/stat``:
    all but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _cores(
    before: dict[str, float], after: dict[str, float], busy: float, seconds: float
) -> dict[str, float]:
    """Cores each process of the run used while recording (CPU seconds / seconds), and
    ``outside the run``: what the rest of the machine used meanwhile (other work on a
    shared machine; the run's processes must share what is left)."""
    used = {k: max(0.0, after[k] - before.get(k, 0.0)) for k in after}
    out = {k: round(v / max(1.0, seconds), 2) for k, v in used.items()}
    out["outside the run"] = round(max(0.0, busy - sum(used.values())) / max(1.0, seconds), 2)
    return out


def _postmaster(url: str) -> int:
    """The postmaster pid of the server behind ``url`` (the parent of our backend)."""
    with connect_db(url) as db:  # read while the backend lives (it exits with the session)
        pid = db.query("SELECT pg_backend_pid()")[0][0]
        status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))


def _cpu(
    children: dict[str, Child],
    postmasters: dict[str, int] | None = None,
    *,
    sim: SimProcess,
) -> dict[str, float]:
    """CPU seconds so far: the simulator, the children, each PostgreSQL server with its
    backends, and this process (the harness)."""
    assert sim.proc is not None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"sim": round(cpu_seconds(sim.proc.pid), 1)}
    for name, child in children.items():
        if child.proc is not None:
            out[name] = round(cpu_seconds(child.proc.pid), 1)
    for name, pid in (postmasters or {}).items():
        out[f"postgres {name}"] = round(cpu_seconds(pid), 1)
    out["harness"] = round(usage.ru_utime + usage.ru_stime, 1)
    return out


async def _monitor(
    client: httpx.AsyncClient,
    ports: dict[str, int],
    samples: _Samples,
    children: dict[str, Child],
    lag_dbs: dict[str, Database],
    sim: SimProcess,
) -> None:
    while True:
        for name, port in ports.items():
            doc = await get_health(client, port)
            samples.health[name] = doc
            for table in samples.tables(name).values():
                samples.max_queue[name] = max(samples.max_queue.get(name, 0), table.get("queue", 0))
                samples.max_spool[name] = max(
                    samples.max_spool.get(name, 0), table.get("spool_rows", 0)
                )
            for conn in (doc or {}).get("connections") or []:
                samples.max_read_ahead[name] = max(
                    samples.max_read_ahead.get(name, 0), conn.get("read_ahead") or 0
                )
        for name, child in children.items():
            if child.proc is not None:
                samples.peak_rss[name] = max(
                    samples.peak_rss.get(name, 0.0), round(peak_rss_mib(child.proc.pid), 1)
                )
        if samples.measuring:
            status = await sim.status()
            phase = "burst" if status["bursting"] else "quiet"
            samples.sim_outbox.append(status.get("outbox_bytes", 0))
            samples.sim_late.append(status.get("engine_late_s", 0.0))
            for db in lag_dbs.values():
                newest = await trio.to_thread.run_sync(_newest, db)
                if newest is not None:
                    exchange_ts, received_at = newest
                    now_us = time.time() * 1e6
                    samples.lag[phase].append(max(0.0, (now_us - exchange_ts) / 1e6))
                    samples.read_lag.append(max(0.0, (received_at - exchange_ts) / 1e6))
                    samples.write_lag.append(max(0.0, (now_us - received_at) / 1e6))
        await trio.sleep(_SAMPLE)


def _newest(db: Database) -> tuple[int, int] | None:
    """(exchange_ts, received_at) of the newest committed order-book delta (µs)."""
    try:
        rows = db.query(
            "SELECT exchange_ts, received_at FROM orderbook_deltas"
            " ORDER BY exchange_ts DESC LIMIT 1"
        )
    except StoreError:
        return None
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def _verify(
    doc: dict[str, Any], urls: dict[str, str], truth_path: Path, books: dict[str, Any]
) -> None:  # urls: every gatherer's database and "prod"
    """Trades lost / duplicated / invented and books unequal, from the streamed truth."""
    failures: list[str] = doc["failures"]
    expected: set[str] = set()
    with truth_path.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"type":"trade"'):
                expected.add(orjson.loads(line)["msg"]["trade_id"])
    rows: dict[str, dict[str, int]] = {}
    for name, url in urls.items():
        with connect_db(url) as db:
            rows[name] = db.counts()
            if name == "prod":
                stored = dict(db.query("SELECT trade_id, count(*) FROM trades GROUP BY trade_id"))
    doc["rows"] = rows
    lost = expected - set(stored)
    duplicated = sum(n - 1 for n in stored.values())
    extra = set(stored) - expected
    try:
        production = production_books(urls["prod"])
    except BookError as exc:
        failures.append(f"production order books are inconsistent: {exc}")
        production = {}
    unequal = [t for t, book in books.items() if production.get(t) != book]
    doc["trades_generated"] = len(expected)
    doc["trades_lost"] = len(lost)
    doc["trades_duplicated"] = duplicated
    doc["trades_invented"] = len(extra)
    doc["books_checked"] = len(books)
    doc["books_unequal"] = len(unequal)
    for what, count in (
        ("trades lost", len(lost)),
        ("trades duplicated", duplicated),
        ("trades the exchange never made", len(extra)),
    ):
        if count:
            failures.append(f"{count} {what}")
    if unequal:
        # what each side holds of the first few, so that the log alone tells why
        detail = unequal_detail(unequal, books, production, urls, truth_path)
        doc["books_unequal_detail"] = detail
        failures.append(
            f"{len(unequal)} books unequal: " + orjson.dumps(detail, default=str).decode()
        )


def _volumes(doc: dict[str, Any], urls: dict[str, str], workdir: Path, s3: S3Server) -> None:
    """Journal, database and Parquet bytes at the end, and what the recording added per
    hour and per day (the growth since the traffic started, extrapolated)."""
    seconds = max(1.0, float(doc.get("seconds_measured") or 0))
    sizes = _sizes(urls, workdir, s3)
    start = doc.get("bytes_at_start") or {}
    doc["bytes"] = sizes
    growth = {k: max(0, v - start.get(k, 0)) for k, v in sizes.items()}
    doc["bytes_per_hour"] = {k: int(v / seconds * 3600) for k, v in growth.items()}
    doc["bytes_per_day"] = {k: int(v / seconds * 86400) for k, v in growth.items()}


def _sizes(urls: dict[str, str], workdir: Path, s3: S3Server) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name in (n for n in urls if n != "prod"):
        sizes[f"journal {name}"] = _du(workdir / name / "journal")
    for name, url in urls.items():
        with connect_db(url) as db:
            sizes[f"database {name}"] = int(
                db.query("SELECT pg_database_size(current_database())")[0][0]
            )
    objects = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="raw/").get("Contents", [])
    sizes["parquet"] = sum(o["Size"] for o in objects if o["Key"].endswith(".parquet"))
    return sizes


def _gatherer_config(
    name: str, sim: Any, key: Path, url: str, workdir: Path, port: int, shard: str
) -> dict[str, Any]:
    """The stock ``etc/gatherer.yaml`` layout and writers, pointed at the simulator."""
    base = workdir / name
    return {
        "gatherer_id": f"scale-{name}",
        "shard": shard,
        "kalshi": {
            "rest_url": sim.rest_url,
            "ws_url": sim.ws_url,
            "api_key": sim.key_id,
            "api_secret": str(key),
            "rest_rate_limit": 10,
        },
        "timescaledb": {"url": url},
        "websocket": {
            "ticker_connections": 2,
            "trade_connections": 2,
            "lifecycle_connections": 2,
            "orderbook_connections": 144,
        },
        "spool": {"dir": str(base / "spool"), "dead_letter_dir": str(base / "dead")},
        "journal": {"dir": str(base / "journal"), "compress": True},
        "snapshot_poller": {"enabled": True, "interval": "15m"},
        "http": {"port": port},
        "metrics": {"enabled": False},
        "shutdown_grace": "60s",
    }


def _dedup_config(names: list[str], urls: dict[str, str], s3: S3Server) -> dict[str, Any]:
    return {
        "gatherers": [{"id": f"scale-{name}", "timescaledb": urls[name]} for name in names],
        "production": {"url": urls["prod"]},
        "s3_export": {
            "enabled": True,
            "endpoint": s3.endpoint,
            "access_key": s3.access_key,
            "secret_key": s3.secret_key,
            "bucket": BUCKET,
            "region": s3.region,
            "prefix": "raw/",
            "window": "60s",
        },
        "sync": {"poll_interval": "200ms", "batch_size": 5000},  # etc/dedup.yaml's prod values
        "http": {"port": 0},
        "metrics": {"enabled": False},
    }
