"""The running service: /health and /metrics while it merges and exports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from dedup_support import (
    MISSES,
    assert_production_is_truth,
    dedup_config,
    recordings,
    write_all,
)

from kalshi.config import HttpConfig, MetricsConfig, S3Config, parse_duration
from kalshi.dedup.export import Exporter
from kalshi.dedup.service import Deduplicator, _health, serve_dedup
from kalshi.errors import DatabaseUnavailable
from kalshi.store import EmbeddedPostgres, connect_db, migrate
from kalshi.testing import free_port
from kalshi.testing.recording import Truth, make_truth, record


async def recorded(
    make_db: Callable[..., str], tmp_path: Path, seed: int, events: int = 200
) -> tuple[Truth, dict[str, str]]:
    """The truth of ``seed`` and the databases of the gatherers that recorded it (MISSES)."""
    truth = make_truth(seed, events=events)
    return truth, await write_all(make_db, recordings(truth, MISSES), tmp_path)


def served(cfg: Any, exporter: Exporter) -> Any:
    """``serve_dedup`` of ``cfg`` with ``exporter``, for ``nursery.start``."""
    return lambda task_status: serve_dedup(cfg, exporter=exporter, task_status=task_status)


async def until(ready: Callable[[], object]) -> None:
    """Return once ``ready()`` holds, asking every 20 ms (the service's state has no event)."""
    while not ready():  # noqa: ASYNC110 - polls the service's state and production
        await trio.sleep(0.02)


def exported(url: str, table: str) -> bool:
    """Whether a window of ``table`` is recorded as exported in production at ``url``."""
    with connect_db(url) as db:
        return bool(db.query("SELECT 1 FROM dedup_exports WHERE table_name = %s", (table,)))


async def test_service_merges_exports_and_reports_health_and_metrics(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    truth, urls = await recorded(make_db, tmp_path, 41)
    production = make_db()
    cfg = attrs.evolve(
        dedup_config(production, urls, poll_interval=parse_duration("20ms")),
        http=HttpConfig(port=free_port()),
        metrics=MetricsConfig(port=free_port()),
    )
    s3 = S3Config(enabled=True, local_dir=str(tmp_path / "out"), window=parse_duration("100ms"))
    exporter = Exporter(production, s3)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(served(cfg, exporter))
            await until(lambda: exported(production, "trades"))  # the first trades window
            async with httpx.AsyncClient() as client:
                health = await client.get(f"http://127.0.0.1:{cfg.http.port}/health")
                scraped = await client.get(f"http://127.0.0.1:{cfg.metrics.port}/metrics")
            nursery.cancel_scope.cancel()
    exporter.close()
    assert_production_is_truth(production, truth, MISSES)
    assert health.status_code == 200
    document = health.json()
    assert document["status"] == "ok"
    assert sorted(document["gatherers"]) == sorted(MISSES)
    assert all(g["up"] for g in document["gatherers"].values())
    assert document["export"] == {
        "up": True,
        "error": "",
        "failures": 0,
        "target": str(tmp_path / "out"),
    }
    assert {f"g0/{t}" for t in ("trades", "orderbook_deltas")} <= set(document["lag_seconds"])
    text = scraped.text
    for name in (
        "kalshi_dedup_rows_merged_total",
        "kalshi_dedup_duplicates_dropped_total",
        "kalshi_dedup_source_switches_total",
        "kalshi_dedup_lag_seconds",
        "kalshi_export_bytes_total",
        "kalshi_export_failures_total",
    ):
        assert name in text
    assert list((tmp_path / "out" / "raw" / "trades").rglob("_manifest.json"))


async def test_a_production_outage_is_waited_out_and_the_merge_completes(
    make_db: Callable[..., str], tmp_path: Path, own_pg: EmbeddedPostgres
) -> None:
    truth, urls = await recorded(make_db, tmp_path, 42)
    migrate(own_pg.url)
    cfg = dedup_config(own_pg.url, urls, poll_interval=parse_duration("20ms"))
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            dedup = await nursery.start(serve_dedup, cfg)
            await trio.to_thread.run_sync(own_pg.stop)
            # the next pass finds production gone
            await until(lambda: dedup.health()["status"] == "degraded")
            assert dedup.health()["production"]["up"] is False
            await trio.to_thread.run_sync(own_pg.start)

            def merged() -> bool:
                if dedup.health()["status"] != "ok" or dedup.passes == 0:
                    return False
                with connect_db(own_pg.url) as db:
                    return bool(db.query("SELECT 1 FROM dedup_cursors LIMIT 1"))

            await until(merged)
            passes = dedup.passes
            await until(lambda: dedup.passes > passes + 1)  # one more full pass after recovery
            nursery.cancel_scope.cancel()
    assert_production_is_truth(own_pg.url, truth, MISSES)


async def test_production_down_with_every_gatherer_is_known_at_the_next_pass(
    tmp_path: Path, own_pg: EmbeddedPostgres
) -> None:
    """Outside tester F8: production and the gatherer's database on one server that stops.
    The next pass skips the gatherer and so writes nothing, yet finds production gone (the
    kept connection is pinged): /health says ``up: false`` after that one pass, not when a
    later write happens to fail."""

    def make_own(name: str | None = None) -> str:
        name = name or f"own_{len(made)}"
        with connect_db(own_pg.url_for("postgres")) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        migrate(own_pg.url_for(name))
        return own_pg.url_for(name)

    made: list[str] = []
    urls = await write_all(make_own, [record(make_truth(44, events=50), "g1")], tmp_path)
    dedup = Deduplicator(dedup_config(make_own("production"), urls))
    try:
        await dedup.run_pass(settle_us=0)
        assert dedup.health()["production"] == {"up": True, "error": ""}
        await trio.to_thread.run_sync(own_pg.stop)
        with pytest.raises(DatabaseUnavailable):
            await dedup.run_pass(settle_us=0)
        document = dedup.health()
        assert (document["status"], document["production"]["up"]) == ("degraded", False)
    finally:
        dedup.close()


async def test_a_failing_export_degrades_health_until_it_works_again(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    """Outside tester F3: while the export fails /health is degraded, with an ``export``
    component giving the cause; once the target works again it is ok (here the target is a
    directory that is a file until the test replaces it)."""
    _, urls = await recorded(make_db, tmp_path, 43)
    production = make_db()
    cfg = attrs.evolve(
        dedup_config(production, urls, poll_interval=parse_duration("20ms")),
        http=HttpConfig(port=free_port()),
    )
    out = tmp_path / "out"
    out.write_text("not a directory")
    s3 = S3Config(enabled=True, local_dir=str(out), window=parse_duration("100ms"))
    exporter = Exporter(production, s3)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dedup = await nursery.start(served(cfg, exporter))
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{cfg.http.port}/health"
                # until a write has failed and a pass reached production (unknown before)
                await until(lambda: exporter.health.error and dedup.passes)
                failing = await client.get(url)
                out.unlink()
                out.mkdir()
                await until(lambda: exported(production, "trades"))
                # a later write of the round may still fail
                await until(lambda: not exporter.health.error)
                working = await client.get(url)
            nursery.cancel_scope.cancel()
    exporter.close()
    assert failing.status_code == 503
    document = failing.json()
    assert document["status"] == "degraded"
    assert document["production"] == {"up": True, "error": ""}
    export = document["export"]
    assert export["up"] is False
    # the round's first call on the target fails: a closed window's write, or (no window
    # closed yet) the markets export's read of its published manifest (cdf8d15)
    assert export["error"].startswith((f"cannot write {out}/raw/", f"cannot read {out}/raw/"))
    assert ": [Errno 20] Not a directory: " in export["error"]
    assert export["failures"] >= 1
    assert working.status_code == 200
    assert working.json()["status"] == "ok"
    assert working.json()["export"] == {"up": True, "error": "", "failures": 0, "target": str(out)}


async def test_the_export_is_unknown_until_a_call_answers_not_up_and_not_degraded(
    make_db: Callable[..., str], tmp_path: Path
) -> None:
    # The export said up before it had written anything (the database's state is unknown
    # until an operation answers: 8090606); unknown is neither up nor a failure.
    _, urls = await recorded(make_db, tmp_path, 47, events=60)
    production = make_db()
    out = tmp_path / "out"
    s3 = S3Config(enabled=True, local_dir=str(out), window=parse_duration("100ms"))
    dedup = Deduplicator(dedup_config(production, urls))
    exporter = Exporter(production, s3)
    try:
        await dedup.run_pass(settle_us=0)
        before = _health(dedup, exporter)
        exporter.health.failed("cannot write: disk full")
        failing = _health(dedup, exporter)
        exporter.health.succeeded()
        working = _health(dedup, exporter)
    finally:
        exporter.close()
        dedup.close()
    export = {"error": "", "failures": 0, "target": str(out)}
    assert (before["status"], before["export"]) == ("ok", {"up": None, **export})
    assert (failing["status"], failing["export"]) == (
        "degraded",
        {"up": False, "error": "cannot write: disk full", "failures": 1, "target": str(out)},
    )
    assert (working["status"], working["export"]) == ("ok", {"up": True, **export})
