"""A connection stopped while a terminal subscription error arrives stops cleanly.

The exchange side is scripted (a connector handing out one session) so that the error 25
frame and the cancellation land in the same scheduling tick, which is what happened
during a timed shutdown at full scale (issue 20: ``_Resubscribe`` escaped, exit 1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from kalshi.gather.connection import Connection
from kalshi.gather.context import RowSink
from kalshi.net import WsConnection
from kalshi.testing import sim
from tests.gather.support import wait_for
from tests.gather.test_connection_timing import context

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
