"""A real capture re-served (``replay --serve``) to an unmodified gatherer: it stores the
capture's trades and deltas, and its books equal the independent ``expected.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from kalshi.auth import Signer, load_private_key
from kalshi.book import OrderBook
from kalshi.gather.service import Gatherer
from kalshi.models.book import Side
from kalshi.replay import ReplayFilter
from kalshi.replay.serve import WS_PATH, serve_recording
from kalshi.replay.source import read_records
from kalshi.sim import open_sim_exchange
from kalshi.sim.universe import SERIES
from kalshi.store import connect_db
from kalshi.testing import PINNED_START_US
from tests.gather.support import sim_config, wait_for

pytestmark = pytest.mark.slow

GOLD = Path(__file__).parent.parent / "data" / "kalshi-gold15m"
WINDOW = "KXGOLD15M-26AUG050800-00"
EXPECTED: dict[str, Any] = orjson.loads((GOLD / "expected.json").read_bytes())[WINDOW]
CAPTURE = GOLD / "events" / WINDOW / "2026-08-05.ndjson.gz"


def best_first(book: OrderBook) -> dict[str, list[list[int]]]:
    return {
        "yes": [list(level) for level in reversed(book.levels(Side.YES))],
        "no": [list(level) for level in reversed(book.levels(Side.NO))],
    }


def capture_deltas_until() -> list[tuple[int, int]]:
    """(instant in ms, number of the capture's deltas received up to it)."""
    import gzip

    recv = [
        orjson.loads(line)["recv_ms"]
        for line in gzip.decompress(CAPTURE.read_bytes()).splitlines()
        if b'"orderbook_delta"' in line
    ]
    return [(int(t), sum(r <= int(t) for r in recv)) for t in EXPECTED["book_at_recv_ms"]]


async def test_a_served_capture_feeds_a_gatherer_the_same_trades_and_books(
    db_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with open_sim_exchange(markets=4, active=0, start_us=PINNED_START_US) as sim:
            # The exchange lists the captured market (REST), the recording serves its frames.
            universe = sim.engine.universe
            event = WINDOW.rsplit("-", 1)[0]
            info = universe.new_info(
                SERIES[0], event, "00", PINNED_START_US, PINNED_START_US + 86_400_000_000
            )
            universe.add(info)
            assert info.ticker == WINDOW
            async with trio.open_nursery() as nursery:
                port = await nursery.start(
                    serve_recording, lambda: read_records([CAPTURE]), 0, ReplayFilter(), None
                )
                cfg = sim_config(
                    sim,
                    tmp_path,
                    db_url,
                    **{
                        "gatherer_id": "served",
                        "kalshi.ws_url": f"ws://127.0.0.1:{port}{WS_PATH}",
                        "websocket.orderbook_connections": 1,
                    },
                )
                signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
                gatherer = Gatherer(cfg, db_url, signer=signer)
                await nursery.start(gatherer.run)
                want = EXPECTED["frames"]["orderbook_delta"], EXPECTED["distinct_trades"]

                def arrived() -> bool:
                    with connect_db(db_url) as db:
                        deltas = db.query(
                            "SELECT count(*) FROM orderbook_deltas WHERE ticker = %s", (WINDOW,)
                        )[0][0]
                        trades = db.query(
                            "SELECT count(*) FROM trades WHERE ticker = %s", (WINDOW,)
                        )[0][0]
                    return (deltas, trades) == want

                await wait_for(arrived, 0.2)
                nursery.cancel_scope.cancel()
    with connect_db(db_url) as db:
        trades = db.query(
            "SELECT count(DISTINCT trade_id), sum(size) FROM trades WHERE ticker = %s", (WINDOW,)
        )
        assert trades == [(EXPECTED["distinct_trades"], EXPECTED["trade_volume"])]
        assert db.query("SELECT count(*) FROM gaps WHERE kind <> 'reconnect'") == [(0,)]
        snaps = db.query(
            "SELECT yes_bids::text, no_bids::text FROM orderbook_snapshots"
            " WHERE ticker = %s AND source = 'ws' ORDER BY conn_id, frame_no",
            (WINDOW,),
        )
        deltas = db.query(
            "SELECT side, price, size_delta FROM orderbook_deltas WHERE ticker = %s"
            " ORDER BY conn_id, frame_no",
            (WINDOW,),
        )
    assert len(snaps) == EXPECTED["frames"]["orderbook_snapshot"]
    # The book after as many deltas as the capture had received at each instant.
    for instant, count in capture_deltas_until():
        book = OrderBook(WINDOW)
        book.yes = {p: s for p, s in orjson.loads(snaps[0][0])}
        book.no = {p: s for p, s in orjson.loads(snaps[0][1])}
        for side, price, size in deltas[:count]:
            levels = book.yes if side else book.no
            levels[price] = levels.get(price, 0) + size
            if levels[price] == 0:
                del levels[price]
        assert best_first(book) == EXPECTED["book_at_recv_ms"][str(instant)], instant
    final = {"yes": orjson.loads(snaps[-1][0])[::-1], "no": orjson.loads(snaps[-1][1])[::-1]}
    assert final == EXPECTED["final_book"]
