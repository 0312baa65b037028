"""A connection's clean stop.

A connection stopped while a terminal subscription error arrives stops cleanly: the
exchange side is scripted (a connector handing out one session) so that the error 25
frame and the cancellation land in the same scheduling tick, which is what happened
during a timed shutdown at full scale (issue 20: ``_Resubscribe`` escaped, exit 1).

A gatherer stopped cleanly journals a ``disconnect`` marker for each of its sessions
(outside checks: a SIGINT'd run had none, so ``replay --continuity`` said ``no disconnect
marker`` for every session, the words of a kill).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from kalshi.auth import Signer, load_private_key
from kalshi.gather.connection import Connection
from kalshi.gather.context import RowSink
from kalshi.gather.service import Gatherer
from kalshi.journal import JournalRecord, read_journal
from kalshi.net import WsConnection
from kalshi.sim import open_sim_exchange
from kalshi.testing import PINNED_START_US, sim
from tests.gather.support import sim_config, wait_for
from tests.gather.test_connection_timing import context
from tests.replay.replay_support import kalshi

_SUBSCRIBED = b'{"type":"subscribed","id":1,"msg":{"channel":"trade","sid":1}}'
_OVERFLOW = (
    b'{"type":"error","sid":1,"seq":1,"msg":{"code":25,"msg":"Subscription buffer overflow"}}'
)


class _Session:
    """``subscribed``, then an error 25 that arrives only when ``release`` is set, even if
    the receiver was cancelled meanwhile (the frame was already on its way)."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.sent: list[bytes | str] = []
        self._replied = False
        self.heard = trio.current_time()

    def ready(self) -> None:
        return None

    async def receive(self) -> bytes | str:
        self.heard = trio.current_time()
        if not self._replied:
            self._replied = True
            return _SUBSCRIBED
        with trio.CancelScope(shield=True):
            await self.release.wait()
        return _OVERFLOW

    async def send(self, data: bytes | str) -> None:
        self.sent.append(data)

    async def ping(self) -> None:
        return


async def test_an_error_25_arriving_during_shutdown_does_not_escape(tmp_path: Path) -> None:
    session = _Session()

    @asynccontextmanager
    async def connector(
        url: str, headers: Mapping[str, str], max_frame_bytes: int
    ) -> AsyncIterator[WsConnection]:
        yield session

    async with sim(markets=10, active=2) as exchange:
        ctx = context(exchange, tmp_path, connector, RowSink({}))
        conn = Connection(ctx, "trade-0", "trade", scoped=False)
        with trio.fail_after(10), trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.run)
                await wait_for(lambda: conn.state == "live", step=0.001)
                scope.cancel()
                session.release.set()
        assert scope.cancelled_caught
        assert (conn.sessions, conn.reconnects) == (1, 0)
        assert session.sent == [
            b'{"id":1,"cmd":"subscribe","params":{"channels":["trade"],"skip_ticker_ack":true}}'
        ]


async def test_a_clean_stop_journals_a_disconnect_for_every_session(
    db_url: str, tmp_path: Path
) -> None:
    async with open_sim_exchange(
        markets=30, active=8, rate=200.0, seed=3, port=0, start_us=PINNED_START_US
    ) as exchange:
        cfg = sim_config(exchange, tmp_path, db_url)
        signer = Signer(exchange.key_id, load_private_key(exchange.private_key_pem.decode()))
        gatherer = Gatherer(cfg, db_url, signer=signer)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(gatherer.run)
                layout = gatherer.layout
                assert layout is not None
                await wait_for(lambda: all(c.state == "live" for c in layout.connections))
                await wait_for(lambda: gatherer.processor.counts["trade"] >= 5)
                nursery.cancel_scope.cancel()  # what SIGINT / SIGTERM do (stop_on_signals)
    connections = layout.connections
    assert len(connections) == 6  # two order-book, trade, ticker, lifecycle, combo lifecycle
    assert all(c.sessions == 1 and c.reconnects == 0 for c in connections)
    records = [r for r in read_journal([tmp_path / "journal"]) if isinstance(r, JournalRecord)]
    ends = [r for r in records if r.kind == "disconnect"]
    # one per session, the reason a clean stop's, after every frame journaled for it and
    # numbered as its last frame received
    assert sorted((r.conn_id, r.detail) for r in ends) == sorted(
        (c.conn_id, {"reason": "gatherer stopping"}) for c in connections
    )
    for end in ends:
        own = [r for r in records if r.conn_id == end.conn_id]
        assert own[-1] is end
        frames = [r.frame_no for r in own if r.kind == "frame" and r.direction == "in"]
        assert end.frame_no == frames[-1] == len(frames)
    assert gatherer.journal is not None and gatherer.journal.unwritten_records == 0

    result = kalshi("replay", "journal", "--continuity", "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sessions = [line for line in result.stderr.splitlines() if line.startswith("  session ")]
    assert sorted((line.split()[1], line.split("; ended: ")[-1]) for line in sessions) == sorted(
        (str(c.conn_id), "gatherer stopping") for c in connections
    )
