"""The soak run: start everything, inject the schedule, stop, and check against the truth.

Everything is real: the simulator (in this process), two ``kalshi gather`` processes, a
``kalshi dedup`` process, an embedded PostgreSQL that is stopped and restarted, and a
``weed`` S3 server that goes down during an export window.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
import yaml
from attrs import define, field

from kalshi.dedup import production_books
from kalshi.errors import BookError
from kalshi.journal import JournalRecord, read_journal
from kalshi.ports import free_port
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.testing.procs import Child, get_health, scratch_dir
from kalshi.testing.s3server import S3Server

__all__ = ["SoakReport", "run_soak"]

BUCKET = "kalshi-soak"
CYCLE = 60.0  # seconds of one round of the fault schedule


@define
class SoakReport:
    rows: list[tuple[str, str]] = field(factory=list)
    faults: list[tuple[str, float, float | None]] = field(factory=list)  # name, at, recovery
    failures: list[str] = field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, what: str, value: object) -> None:
        self.rows.append((what, str(value)))

    def check(self, condition: bool, failure: str) -> None:
        if not condition:
            self.failures.append(failure)


@define
class _Monitor:
    ports: dict[str, int]
    health: dict[str, dict[str, Any] | None] = field(factory=dict)
    peak_spool_rows: int = 0
    polled: trio.Event = field(factory=trio.Event)  # set (and replaced) after each round

    async def next_poll(self) -> None:
        """Return after the next complete round of health polls."""
        await self.polled.wait()

    def live(self, name: str) -> bool:
        doc = self.health.get(name)
        return bool(doc) and doc.get("status") == "ok"  # type: ignore[union-attr]

    def drained(self, name: str) -> bool:
        """The database is up and nothing waits in the spool."""
        doc = self.health.get(name) or {}
        tables = (doc.get("tables") or {}).values()
        up = doc.get("db", {}).get("state") == "up"
        return up and all(t.get("spool_rows", 0) == 0 for t in tables)

    def settled(self, name: str) -> bool:
        """Live, drained, every book trusted and nothing queued."""
        if not (self.live(name) and self.drained(name)):
            return False
        doc = self.health[name] or {}
        queued = any(t.get("queue", 0) for t in (doc.get("tables") or {}).values())
        return (doc.get("markets") or {}).get("stale", 1) == 0 and not queued


async def run_soak(
    workdir: Path,
    duration: float = 60.0,
    *,
    markets: int = 40,
    active: int = 12,
    rate: float = 300.0,
    seed: int = 7,
    transport: str = "websockets",
    say: Callable[[str], None] = print,
) -> SoakReport:
    """Run the soak for ``duration`` seconds of faults; returns the report."""
    from kalshi.sim import open_sim_exchange

    await trio.to_thread.run_sync(lambda: workdir.mkdir(parents=True, exist_ok=True))
    report = SoakReport()
    pg = EmbeddedPostgres(scratch_dir("kalshi-soak-pg-") / "pg")
    await trio.to_thread.run_sync(pg.start)
    s3 = S3Server(workdir / "s3")
    children: dict[str, Child] = {}
    final: Child | None = None
    try:
        urls = {}
        with connect_db(pg.url_for("postgres")) as db:
            for name in ("soak_g1", "soak_g2", "soak_prod"):
                db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                db.execute(f'CREATE DATABASE "{name}"')
                urls[name] = pg.url_for(name)
        for url in urls.values():
            await trio.to_thread.run_sync(migrate, url)
        await trio.to_thread.run_sync(s3.start)
        s3.create_bucket(BUCKET)
        say(f"PostgreSQL {pg.url_for('postgres')}  S3 {s3.endpoint}")
        async with open_sim_exchange(
            markets=markets, active=active, rate=rate, seed=seed, port=0, tier=None
        ) as sim:
            sim.engine.pause()  # trades before the recorders exist cannot be recorded
            before = len(sim.truth.trades)
            key = workdir / "key.pem"
            key.write_bytes(sim.private_key_pem)
            ports = {"g1": free_port(), "g2": free_port()}
            for name in ("g1", "g2"):
                config = _gatherer_config(
                    name, sim, key, urls[f"soak_{name}"], workdir, ports[name], transport
                )
                path = workdir / f"{name}.yaml"
                path.write_text(yaml.safe_dump(config))
                children[name] = Child(
                    name, ["gather", "--config", str(path)], workdir / f"{name}.log"
                )
            dedup_path = workdir / "dedup.yaml"
            dedup_path.write_text(yaml.safe_dump(_dedup_config(urls, s3)))
            children["dedup"] = Child(
                "dedup", ["dedup", "--config", str(dedup_path)], workdir / "dedup.log"
            )
            monitor = _Monitor(ports)
            async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
                nursery.start_soon(_watch, client, monitor, children)
                for name in ("g1", "g2"):
                    await children[name].start()
                with trio.fail_after(60):
                    while not (monitor.live("g1") and monitor.live("g2")):  # noqa: ASYNC110
                        await trio.sleep(0.2)
                await children["dedup"].start()
                sim.engine.resume()
                say(f"recording; faults for {duration:.0f}s")
                started = trio.current_time()
                await _faults(sim, pg, s3, children, monitor, report, duration, say)
                await trio.sleep_until(started + duration)
                sim.engine.pause()
                say("quiet; waiting for every book to be trusted and every row written")
                with trio.move_on_after(60) as waited:
                    while not (monitor.settled("g1") and monitor.settled("g2")):  # noqa: ASYNC110
                        await trio.sleep(0.3)
                if waited.cancelled_caught:
                    for name in ("g1", "g2"):
                        say(f"{name} health: {orjson.dumps(monitor.health.get(name)).decode()}")
                report.check(not waited.cancelled_caught, "gatherers did not settle within 60 s")
                await trio.sleep(1.5)
                for name in ("g1", "g2"):
                    code = await children[name].stop(signal.SIGTERM)
                    report.check(code == 0, f"{name} exited {code} on SIGTERM")
                code = await children["dedup"].stop(signal.SIGTERM)
                report.check(code == 0, f"dedup exited {code} on SIGTERM")
                nursery.cancel_scope.cancel()
            final = Child(
                "dedup-once",
                ["dedup", "--config", str(dedup_path), "--once"],
                workdir / "dedup.log",
            )
            await final.start()
            code = await final.wait()
            report.check(code == 0, f"dedup --once exited {code}")
            await _verify(report, sim, before, urls, workdir, s3, children, monitor)
    finally:
        with trio.CancelScope(shield=True):  # no child outlives the soak, no log stays open
            for child in [*children.values(), *([final] if final else [])]:
                if child.proc is not None:
                    await child.stop(signal.SIGKILL)
        await trio.to_thread.run_sync(s3.stop)
        await trio.to_thread.run_sync(pg.stop)
    return report


async def _watch(client: httpx.AsyncClient, monitor: _Monitor, children: dict[str, Child]) -> None:
    while True:
        for name, port in monitor.ports.items():
            doc = await get_health(client, port)
            monitor.health[name] = doc
            if doc:
                spool = sum(t.get("spool_rows", 0) for t in (doc.get("tables") or {}).values())
                monitor.peak_spool_rows = max(monitor.peak_spool_rows, spool)
        for child in children.values():
            child.sample_rss()
        monitor.polled.set()
        monitor.polled = trio.Event()
        await trio.sleep(0.25)


def _reconnects(monitor: _Monitor, names: tuple[str, ...]) -> int:
    total = 0
    for name in names:
        doc = monitor.health.get(name) or {}
        total += sum(c.get("reconnects", 0) for c in doc.get("connections") or [])
    return total


async def _recovered(
    monitor: _Monitor, names: tuple[str, ...] = ("g1", "g2"), since: int | None = None
) -> float | None:
    """Seconds until the connections of ``names`` reconnected (more reconnects than
    ``since``) and are all live again; None after a minute."""
    start = trio.current_time()
    with trio.move_on_after(60):
        while since is not None and _reconnects(monitor, names) <= since:  # noqa: ASYNC110
            await trio.sleep(0.05)
        # the round in progress may predate the reconnects; the one after it does not
        await monitor.next_poll()
        await monitor.next_poll()
        while not all(monitor.live(n) for n in names):  # noqa: ASYNC110 - other processes
            await trio.sleep(0.05)
        return trio.current_time() - start
    return None


async def _faults(
    sim: Any,
    pg: EmbeddedPostgres,
    s3: S3Server,
    children: dict[str, Child],
    monitor: _Monitor,
    report: SoakReport,
    duration: float,
    say: Callable[[str], None],
) -> None:
    start = trio.current_time()
    # The schedule below is one cycle of CYCLE seconds; a longer soak repeats it.
    cycle = min(duration, CYCLE)
    origin = start

    async def at(fraction: float, name: str, action: Callable[[], Awaitable[float | None]]) -> None:
        await trio.sleep_until(origin + fraction * cycle)
        now = trio.current_time() - start
        say(f"  t={now:6.1f}s  {name}")
        recovery = await action()
        report.faults.append((name, round(now, 1), recovery))

    def ws(fault: Callable[[], object]) -> Callable[[], Awaitable[float | None]]:
        async def run() -> float | None:
            since = _reconnects(monitor, ("g1", "g2"))
            fault()
            return await _recovered(monitor, since=since)

        return run

    async def none(fault: Callable[[], object]) -> float | None:
        fault()
        return None

    async def pg_down() -> float | None:
        await trio.to_thread.run_sync(pg.stop)
        await trio.sleep(max(3.0, cycle * 0.06))
        await trio.to_thread.run_sync(pg.start)
        begin = trio.current_time()
        with trio.move_on_after(60):
            while not all(  # noqa: ASYNC110 - polling other processes
                monitor.live(n) and monitor.drained(n) for n in ("g1", "g2")
            ):
                await trio.sleep(0.1)
        return trio.current_time() - begin

    async def kill_g2() -> float | None:
        await children["g2"].stop(signal.SIGKILL)
        await trio.sleep(2.0)
        await children["g2"].start()
        return await _recovered(monitor, ("g2",))

    async def s3_down() -> float | None:
        await trio.to_thread.run_sync(s3.stop)
        await trio.sleep(max(4.0, cycle * 0.06))
        await trio.to_thread.run_sync(s3.start)
        return None

    async def refuse_and_drop() -> float | None:
        since = _reconnects(monitor, ("g1", "g2"))
        sim.faults.refuse_connections(2.0)
        sim.faults.drop_connections(abrupt=True)
        return await _recovered(monitor, since=since)

    async def new_and_settled() -> float | None:
        sim.add_market()
        tickers = sim.engine.active_tickers
        sim.settle_market(tickers[0], "yes")
        return None

    schedule: list[tuple[float, str, Callable[[], Awaitable[float | None]]]] = [
        (
            0.06,
            "WebSocket drop (clean close)",
            ws(lambda: sim.faults.drop_connections(abrupt=False)),
        ),
        (
            0.12,
            "WebSocket drop (abrupt reset)",
            ws(lambda: sim.faults.drop_connections(abrupt=True)),
        ),
        (0.18, "silent sockets (3 s, no pongs)", ws(lambda: sim.faults.go_silent(3.0))),
        (0.26, "seq gap on every subscription", lambda: none(lambda: sim.faults.skip_seq(1))),
        (0.28, "seq repeat on every subscription", lambda: none(lambda: sim.faults.repeat_seq(1))),
        (
            0.30,
            "malformed frames (4 kinds)",
            lambda: none(
                lambda: [
                    sim.faults.send_malformed(k)
                    for k in ("json", "truncated", "unknown_type", "wrong_type")
                ]
            ),
        ),
        (
            0.34,
            "REST 429 storm + drop (backfill under 429)",
            ws(lambda: (sim.faults.rest_429(3.0), sim.faults.drop_connections(abrupt=True))),
        ),
        (0.42, "new market listed, one settled", new_and_settled),
        (0.46, "PostgreSQL stopped and restarted", pg_down),
        (0.60, "gatherer g2 SIGKILL and restart", kill_g2),
        (0.70, "S3 server down during export", s3_down),
        (0.80, "connections refused (2 s) + drop", refuse_and_drop),
        (
            0.90,
            "WebSocket drop (abrupt reset)",
            ws(lambda: sim.faults.drop_connections(abrupt=True)),
        ),
    ]
    while origin + cycle <= start + duration + 1e-9:
        for fraction, name, action in schedule:
            await at(fraction, name, action)
        origin += cycle


async def _verify(
    report: SoakReport,
    sim: Any,
    before: int,
    urls: dict[str, str],
    workdir: Path,
    s3: S3Server,
    children: dict[str, Child],
    monitor: _Monitor,
) -> None:
    truth = sim.truth
    generated = sum(truth.events_generated.values())
    received: Counter[str] = Counter()
    problems = 0
    for name in ("g1", "g2"):
        for record in read_journal([workdir / name / "journal"]):
            if isinstance(record, JournalRecord):
                if record.kind == "frame" and record.direction == "in":
                    received[name] += 1
            else:
                problems += 1
    stored: Counter[str] = Counter()
    gaps: Counter[str] = Counter()
    for name in ("g1", "g2"):
        with connect_db(urls[f"soak_{name}"]) as db:
            stored[name] += sum(db.counts().values())
            for kind, count in db.query("SELECT kind, count(*) FROM gaps GROUP BY kind"):
                gaps[f"{name}:{kind}"] += count
    expected = {t.trade_id for t in truth.trades[before:]}
    earlier = {t.trade_id for t in truth.trades[:before]}
    with connect_db(urls["soak_prod"]) as db:
        prod = dict(db.query("SELECT trade_id, count(*) FROM trades GROUP BY trade_id"))
        prod_gaps = dict(db.query("SELECT kind, count(*) FROM gaps GROUP BY kind"))
        prod_counts = db.counts()
    lost = expected - set(prod)
    duplicates = sum(n - 1 for n in prod.values())
    extra = set(prod) - expected - earlier
    try:
        books = production_books(urls["soak_prod"])
    except BookError as exc:
        report.failures.append(f"production order books are inconsistent: {exc}")
        books = {}
    wrong_books = [t for t in sim.engine.active_tickers if books.get(t) != truth.book(t)]
    objects = s3.client().list_objects_v2(Bucket=BUCKET, Prefix="raw/").get("Contents", [])
    parquet = sum(1 for o in objects if o["Key"].endswith(".parquet"))
    manifests = sum(1 for o in objects if o["Key"].endswith("_manifest.json"))
    peak_rss = max((c.peak_rss_kib for c in children.values()), default=0) / 1024

    report.add("messages generated by the exchange", f"{generated:,}")
    report.add(
        "frames received and journaled (g1 / g2)", f"{received['g1']:,} / {received['g2']:,}"
    )
    report.add("journal lines unreadable", problems)
    report.add("rows stored (g1 / g2)", f"{stored['g1']:,} / {stored['g2']:,}")
    report.add("rows in production", f"{sum(prod_counts.values()):,}")
    report.add("trades generated since recording began", f"{len(expected):,}")
    report.add(
        "trades in production",
        f"{len(prod):,} ({len(prod) - len(expected & set(prod))} from before the start)",
    )
    report.add("trades lost", len(lost))
    report.add("trades duplicated in production", duplicates)
    report.add(
        "order books wrong at the end", f"{len(wrong_books)} of {len(sim.engine.active_tickers)}"
    )
    report.add(
        "faults injected (simulator)",
        ", ".join(f"{k} {v}" for k, v in sorted(truth.faults_injected.items())),
    )
    report.add("gaps recorded by gatherers", ", ".join(f"{k} {v}" for k, v in sorted(gaps.items())))
    report.add(
        "gaps in production", ", ".join(f"{k} {v}" for k, v in sorted(prod_gaps.items())) or "none"
    )
    report.add("exported Parquet files / manifests", f"{parquet} / {manifests}")
    report.add("peak RSS of a child process", f"{peak_rss:.0f} MiB")
    report.add("peak spool (rows on disk)", f"{monitor.peak_spool_rows:,}")
    restarts = ", ".join(f"{n}: {c.exit_codes}" for n, c in children.items())
    report.add("exit codes", restarts)
    report.check(not lost, f"{len(lost)} trades lost")
    report.check(duplicates == 0, f"{duplicates} duplicate trades in production")
    report.check(not extra, f"{len(extra)} trades the exchange never made")
    report.check(not wrong_books, f"books differ from the exchange: {wrong_books[:5]}")
    report.check(problems == 0, f"{problems} unreadable journal lines")
    report.check(parquet > 0 and manifests > 0, "nothing was exported")
    seq_gaps = gaps["g1:seq_gap"] + gaps["g2:seq_gap"]
    report.check(
        seq_gaps == truth.faults_injected["skip_seq"],
        f"{seq_gaps} seq gaps recorded, {truth.faults_injected['skip_seq']} injected",
    )
    for name, _at, recovery in report.faults:
        if recovery is None and "WebSocket" in name:
            report.failures.append(f"no recovery after {name}")


def _gatherer_config(
    name: str, sim: Any, key: Path, url: str, workdir: Path, port: int, transport: str
) -> dict[str, Any]:
    base = workdir / name
    return {
        "gatherer_id": f"soak-{name}",
        "kalshi": {
            "rest_url": sim.rest_url,
            "ws_url": sim.ws_url,
            "api_key": sim.key_id,
            "api_secret": str(key),
            "rest_rate_limit": 50,
        },
        "timescaledb": {"url": url},
        "websocket": {
            "orderbook_connections": 2,
            "trade_connections": 1,
            "ticker_connections": 1,
            "lifecycle_connections": 1,
            "reconnect_backoff": "200ms",
            "max_reconnect_backoff": "2s",
            "silence_timeout": "2s",
            "ping_interval": "500ms",
            "transport": transport,
        },
        "writers": {
            t: {"flush_interval": "200ms"}
            for t in (
                "trades",
                "orderbook_deltas",
                "tickers",
                "orderbook_snapshots",
                "market_lifecycle",
                "gaps",
            )
        },
        "spool": {
            "dir": str(base / "spool"),
            "dead_letter_dir": str(base / "dead"),
            "memory_rows": 200,
        },
        "journal": {"dir": str(base / "journal"), "compress": True},
        "snapshot_poller": {"enabled": True, "interval": "15s", "max_markets": 5},
        "http": {"port": port},
        "metrics": {"enabled": False},
        "shutdown_grace": "15s",
    }


def _dedup_config(urls: dict[str, str], s3: S3Server) -> dict[str, Any]:
    return {
        "gatherers": [
            {"id": "soak-g1", "timescaledb": urls["soak_g1"]},
            {"id": "soak-g2", "timescaledb": urls["soak_g2"]},
        ],
        "production": {"url": urls["soak_prod"]},
        "s3_export": {
            "enabled": True,
            "endpoint": s3.endpoint,
            "access_key": s3.access_key,
            "secret_key": s3.secret_key,
            "bucket": BUCKET,
            "region": s3.region,
            "prefix": "raw/",
            "window": "10s",
        },
        "sync": {"poll_interval": "500ms", "batch_size": 2000, "max_lag": "5s"},
        "http": {"port": 0},
        "metrics": {"enabled": False},
    }
