"""`replay --serve`: a recording re-served over a real WebSocket, as the exchange would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing
import trio_websocket
from replay_support import (
    T1,
    T2,
    delta,
    records,
    scripted_session,
    snapshot,
    write_journal,
)

from kalshi.errors import HttpError
from kalshi.journal import read_journal
from kalshi.net import get_transport
from kalshi.replay import ReplayFilter
from kalshi.replay.serve import WS_PATH, serve_recording, serve_stream
from kalshi.replay.source import read_records


async def _receive(ws: trio_websocket.WebSocketConnection, count: int) -> list[dict[str, Any]]:
    return [orjson.loads(await ws.get_message()) for _ in range(count)]


async def _serving(
    nursery: trio.Nursery, files: list[Path], flt: ReplayFilter | None = None
) -> str:
    port = await nursery.start(serve_recording, lambda: read_journal(files), 0, flt, None)
    return f"ws://127.0.0.1:{port}{WS_PATH}"


async def test_subscribed_channels_get_the_recorded_frames_renumbered(tmp_path: Path) -> None:
    files = await write_journal(tmp_path / "journal", scripted_session())
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url = await _serving(nursery, files)
            headers = [("KALSHI-ACCESS-KEY", "anything")]
            async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
                command = {"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}}
                await ws.send_message(orjson.dumps(command).decode())
                got = await _receive(ws, 3)
                assert got[0] == {
                    "id": 1,
                    "type": "subscribed",
                    "msg": {"channel": "trade", "sid": 1},
                }
                assert [(f["type"], f["sid"], f["seq"], f["msg"]["trade_id"]) for f in got[1:]] == [
                    ("trade", 1, 1, "tr-1"),
                    ("trade", 1, 2, "tr-2"),
                ]
            async with trio_websocket.open_websocket_url(url) as ws:
                command = {
                    "id": 7,
                    "cmd": "subscribe",
                    "params": {"channels": ["orderbook_delta"], "market_tickers": [T1]},
                }
                await ws.send_message(orjson.dumps(command).decode())
                got = await _receive(ws, 6)
                assert got[0]["type"] == "subscribed"
                shape = [
                    (f["type"], f["sid"], f["seq"], f["msg"]["market_ticker"]) for f in got[1:]
                ]
                # T1 only: snapshot, delta, then the recording's gap (seq 5, 6 lost; a
                # skipped served seq), the resnapshot and a delta.
                assert shape == [
                    ("orderbook_snapshot", 1, 1, T1),
                    ("orderbook_delta", 1, 2, T1),
                    ("orderbook_delta", 1, 4, T1),
                    ("orderbook_snapshot", 1, 5, T1),
                    ("orderbook_delta", 1, 6, T1),
                ]
                assert got[2]["msg"]["delta_fp"] == "-2.00"
                # get_snapshot now: the book at the end of the recording.
                update = {
                    "id": 8,
                    "cmd": "update_subscription",
                    "params": {"sids": [1], "market_tickers": [T1], "action": "get_snapshot"},
                }
                await ws.send_message(orjson.dumps(update).decode())
                (snap,) = await _receive(ws, 1)
                assert snap == {
                    "type": "orderbook_snapshot",
                    "sid": 1,
                    "seq": 7,
                    "id": 8,
                    "msg": {
                        "market_ticker": T1,
                        "market_id": f"id-{T1}",
                        "yes_dollars_fp": [["0.4000", "11.00"], ["0.4100", "2.00"]],
                    },
                }
                # add a market after the stream ran: its snapshot is the book at this point.
                add = {
                    "id": 9,
                    "cmd": "update_subscription",
                    "params": {"sid": 1, "market_tickers": [T2], "action": "add_markets"},
                }
                await ws.send_message(orjson.dumps(add).decode())
                ok, snap2 = await _receive(ws, 2)
                assert ok == {
                    "id": 9,
                    "sid": 1,
                    "seq": 8,
                    "type": "ok",
                    "msg": {"market_tickers": [T1, T2]},
                }
                assert (
                    snap2["seq"],
                    snap2["msg"]["yes_dollars_fp"],
                    snap2["msg"]["no_dollars_fp"],
                ) == (
                    9,
                    [["0.1000", "1.00"]],
                    [["0.6000", "3.50"]],
                )
            nursery.cancel_scope.cancel()


async def test_commands_the_exchange_refuses(tmp_path: Path) -> None:
    files = await write_journal(tmp_path / "journal", scripted_session())
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url = await _serving(nursery, files)
            async with trio_websocket.open_websocket_url(url) as ws:
                for command in (
                    {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}},
                    {"id": 2, "cmd": "subscribe", "params": {"channels": ["ticker_v2"]}},
                    {"id": 3, "cmd": "frobnicate"},
                    {"id": 4, "cmd": "update_subscription", "params": {"sids": [9], "action": "x"}},
                ):
                    await ws.send_message(orjson.dumps(command).decode())
                await ws.send_message("not json")
                got = await _receive(ws, 5)
                assert [(f.get("id"), f["msg"]["code"]) for f in got] == [
                    (1, 14),
                    (2, 8),
                    (3, 5),
                    (4, 7),
                    (None, 1),
                ]
            # our transport: trio-websocket's open_websocket leaves a refused socket open
            with pytest.raises(HttpError) as refused:
                async with get_transport("trio-websocket")(url.replace(WS_PATH, "/nope"), {}, 1024):
                    pass
            assert refused.value.status == 404
            nursery.cancel_scope.cancel()


async def test_speed_paces_served_frames_by_recorded_time(autojump_clock: trio.abc.Clock) -> None:
    items = records(scripted_session())
    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_stream, server_end, lambda: items, None, 4.0)
        ws = await trio_websocket.wrap_client_stream(nursery, client_end, "replay", WS_PATH)  # type: ignore[arg-type]
        command = {"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}}
        await ws.send_message(orjson.dumps(command).decode())
        arrivals = []
        for _ in range(3):
            frame = orjson.loads(await ws.get_message())
            arrivals.append((frame["type"], trio.current_time()))
        await ws.aclose()
    # The clock starts at the first recorded frame (+100 µs); trades were received at +250
    # and +350 µs; at speed 4 they come 150/4 and 250/4 µs after the subscribe.
    (_, t0), (_, t1), (_, t2) = arrivals
    assert [kind for kind, _ in arrivals] == ["subscribed", "trade", "trade"]
    assert (t1 - t0, t2 - t0) == (150 / 1e6 / 4.0, 250 / 1e6 / 4.0)


async def test_a_capture_session_going_on_into_the_next_file_is_served_whole(
    tmp_path: Path,
) -> None:
    """A capture cut into two files, its order book going on in the second without a
    snapshot there: each file is its own connection (docs/replay.md, "Identity of a
    capture's rows") but the served stream carries the book on, every delta in seq order."""
    lines = [
        b'{"recv_ms":1795561140000,"event":%s}' % snapshot(1, 500, T1, yes=[("0.4000", "10.00")]),
        b'{"recv_ms":1795561140001,"event":%s}' % delta(1, 501, T1, "0.4000", "-2.00"),
        b'{"recv_ms":1795561140005,"event":%s}' % delta(1, 502, T1, "0.4000", "1.00"),
        b'{"recv_ms":1795561140006,"event":%s}' % delta(1, 503, T1, "0.4100", "2.00"),
    ]
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "a.jsonl").write_bytes(b"".join(line + b"\n" for line in lines[:2]))
    (tmp_path / "cut" / "b.jsonl").write_bytes(b"".join(line + b"\n" for line in lines[2:]))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                serve_recording, lambda: read_records([tmp_path / "cut"]), 0, None, None
            )
            url = f"ws://127.0.0.1:{port}{WS_PATH}"
            async with trio_websocket.open_websocket_url(url) as ws:
                command = {
                    "id": 1,
                    "cmd": "subscribe",
                    "params": {"channels": ["orderbook_delta"], "market_tickers": [T1]},
                }
                await ws.send_message(orjson.dumps(command).decode())
                got = await _receive(ws, 5)
                assert got[0]["type"] == "subscribed"
                assert [(f["type"], f["seq"], f["msg"].get("delta_fp")) for f in got[1:]] == [
                    ("orderbook_snapshot", 1, None),
                    ("orderbook_delta", 2, "-2.00"),
                    ("orderbook_delta", 3, "1.00"),
                    ("orderbook_delta", 4, "2.00"),
                ]
            nursery.cancel_scope.cancel()
