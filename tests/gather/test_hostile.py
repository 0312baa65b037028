"""Hostile input for the gatherer: any frame through the pipeline, and secrets that must
never leave the process (logs, /health, /debug/markets, metrics, journal)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from kalshi.auth import Signer, load_private_key
from kalshi.config import GathererConfig
from kalshi.gather.service import Gatherer
from kalshi.pipeline import FrameProcessor
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for
from tests.strategies import frame_types, json_values, messages


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            frame_types,
            st.one_of(st.integers(-2, 3), json_values),
            st.one_of(st.integers(-2, 9), json_values),
            messages,
        ),
        max_size=12,
    )
)
def test_any_frame_sequence_gives_an_outcome_never_an_exception(frames: list) -> None:
    processor = FrameProcessor("fuzz")
    for i, (kind, sid, seq, msg) in enumerate(frames, start=1):
        raw = json.dumps({"type": kind, "sid": sid, "seq": seq, "msg": msg}).encode()
        out = processor.process(1, i, 1000 + i, raw)
        assert out.problem is not None or out.message is not None


async def test_the_private_key_never_leaves_the_process(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_sim_exchange(
        markets=20, active=5, rate=300.0, seed=9, port=0, start_us=PINNED_START_US
    ) as sim:
        pem = sim.private_key_pem.decode()
        cfg: GathererConfig = sim_config(
            sim, tmp_path, db_url, **{"metrics.enabled": True, "metrics.port": 0}
        )
        gatherer = Gatherer(cfg, db_url, signer=Signer(sim.key_id, load_private_key(pem)))
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                await wait_for(lambda: gatherer.processor.counts["orderbook_delta"] > 20)
                sim.faults.drop_connections(abrupt=True)  # errors get logged too
                await wait_for(lambda: gatherer.processor.counts["subscribed"] >= 10)
                health = orjson.dumps(gatherer.health())
                markets = orjson.dumps(gatherer.registry.page(None, None, 1000, None))
                nursery.cancel_scope.cancel()
    secrets = [line for line in pem.splitlines() if line and "-----" not in line]
    assert len(secrets) >= 10
    journal = b"".join(p.read_bytes() for p in (tmp_path / "journal").rglob("*.jsonl*"))
    places = {
        "logs": caplog.text,
        "health": health.decode(),
        "debug/markets": markets.decode(),
        "metrics": generate_latest().decode(),
        "journal": journal.decode(errors="replace"),
        "config repr": repr(cfg),
        "signer repr": repr(gatherer.signer),
    }
    assert len(journal) > 1000
    for where, text in places.items():
        assert "PRIVATE KEY" not in text, where
        assert not any(secret in text for secret in secrets), where
    assert (cfg.http.host, cfg.metrics.host) == ("127.0.0.1", "127.0.0.1")
