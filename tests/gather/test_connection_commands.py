"""Subscription commands: paced at ``websocket.commands_per_second``, chunked by
``markets_per_command``, and always with ``skip_ticker_ack`` (kalshi-api.md §2.2, §2.6)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import trio
import trio.testing

from kalshi.gather.connection import Connection
from kalshi.gather.context import RowSink
from kalshi.models.rows import TABLE_COLUMNS, Row
from kalshi.net import WsConnection
from kalshi.testing import sim
from kalshi.testing.memory import memory_connector
from tests.gather.support import wait_for
from tests.gather.test_connection_timing import context, drain


async def test_commands_are_paced_and_replies_carry_no_market_list(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with sim(markets=40, active=10, seed=4, rate=50.0) as exchange:
        memory = memory_connector(exchange)
        sent: list[tuple[float, dict[str, object]]] = []
        received: list[dict[str, object]] = []

        class Watched:
            def __init__(self, ws: WsConnection) -> None:
                self.ws = ws
                self.read_bytes = ws.read_bytes

            @property
            def heard(self) -> float:
                return self.ws.heard

            def ready(self) -> None:
                return None  # every frame through receive, recorded

            async def receive(self) -> bytes | str:
                raw = await self.ws.receive()
                received.append(orjson.loads(raw))
                return raw

            async def send(self, data: bytes | str) -> None:
                sent.append((trio.current_time(), orjson.loads(data)))
                await self.ws.send(data)

            async def ping(self) -> None:
                await self.ws.ping()

        @asynccontextmanager
        async def connector(
            url: str, headers: Mapping[str, str], max_frame_bytes: int
        ) -> AsyncIterator[WsConnection]:
            async with memory(url, headers, max_frame_bytes) as ws:
                yield Watched(ws)

        async with trio.open_nursery() as nursery:
            channels = {}
            for table in TABLE_COLUMNS:
                send, receive = trio.open_memory_channel[Row](100_000)
                channels[table] = send
                nursery.start_soon(drain, receive)
            ctx = context(
                exchange,
                tmp_path,
                connector,
                RowSink(channels),
                **{"websocket.markets_per_command": 3, "websocket.commands_per_second": 4},
            )
            conn = Connection(ctx, "orderbook-0", "orderbook_delta", scoped=True)
            tickers = sorted(exchange.engine.active_tickers)
            conn.add(tickers)
            nursery.start_soon(conn.run)
            await wait_for(lambda: len(sent) == 4, step=0.01)
            await wait_for(lambda: sum(1 for f in received if f["type"] == "ok") == 3, step=0.01)
            nursery.cancel_scope.cancel()
        start = sent[0][0]
        assert [round(at - start, 6) for at, _ in sent] == [0.0, 0.25, 0.5, 0.75]
        commands = [command for _, command in sent]
        assert commands[0]["params"] == {
            "channels": ["orderbook_delta"],
            "market_tickers": tickers[:3],
            "skip_ticker_ack": True,
        }
        assert (
            [c["params"]["market_tickers"] for c in commands[1:]]
            == [  # type: ignore[index]
                tickers[3:6],
                tickers[6:9],
                tickers[9:],
            ]
        )
        assert [f["msg"] for f in received if f["type"] == "ok"] == [{}, {}, {}]
        snapshots = {
            f["msg"]["market_ticker"]  # type: ignore[index]
            for f in received
            if f["type"] == "orderbook_snapshot"
        }
        assert snapshots == set(tickers)
