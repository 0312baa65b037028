"""`replay --serve` and the simulator speak one protocol (kalshi-api.md §2): the gold capture
re-served and the simulated exchange answer the same command sequence with the same replies
(types, ids, sids, which envelope fields, error codes and texts, market lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import trio
import trio_websocket

from kalshi.replay import ReplayFilter
from kalshi.replay.serve import serve_recording
from kalshi.replay.source import read_records
from kalshi.sim import open_sim_exchange
from kalshi.sim.universe import SERIES
from kalshi.testing import PINNED_START_US
from kalshi.wire import WS_PATH

GOLD = Path(__file__).parent.parent / "data" / "kalshi-gold15m"
WINDOW = "KXGOLD15M-26AUG050800-00"
CAPTURE = GOLD / "events" / WINDOW / "2026-08-05.ndjson.gz"
OTHER = "KXGOLD15M-26AUG050800-99"  # known to neither: no snapshot, still listed

# (command, how many replies carry its id); "not json" is answered by an error without id.
COMMANDS: list[tuple[dict[str, Any] | str, int]] = [
    ({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"],
      "market_tickers": [WINDOW]}}, 1),
    ({"id": 2, "cmd": "subscribe", "params": {"channels": ["trade", "ticker"]}}, 2),
    ({"id": 3, "cmd": "list_subscriptions"}, 1),
    ({"id": 4, "cmd": "update_subscription", "params": {"sid": 1, "market_tickers": [OTHER],
      "action": "add_markets"}}, 1),
    ({"id": 5, "cmd": "update_subscription", "params": {"sids": [1], "market_tickers": [OTHER],
      "action": "delete_markets"}}, 1),
    ({"id": 6, "cmd": "update_subscription", "params": {"sids": [2], "market_tickers": [WINDOW],
      "action": "get_snapshot"}}, 1),
    ({"id": 7, "cmd": "update_subscription", "params": {"sids": [1, 2],
      "action": "add_markets"}}, 1),
    ({"id": 8, "cmd": "update_subscription", "params": {"sid": 1,
      "market_tickers": [OTHER]}}, 1),
    ({"id": 9, "cmd": "update_subscription", "params": {"sid": 1, "market_tickers": [WINDOW],
      "action": "get_snapshot"}}, 1),
    ({"id": 10, "cmd": "unsubscribe", "params": {"sids": [3]}}, 1),
    ({"id": 11, "cmd": "unsubscribe", "params": {"sids": [9]}}, 1),
    ({"id": 12, "cmd": "unsubscribe", "params": {}}, 1),
    ({"id": 13, "cmd": "frobnicate"}, 1),
    ({"id": 14, "cmd": "subscribe", "params": {"channels": ["ticker_v2"]}}, 1),
    ({"id": 15, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 1),
    ({"id": 16, "cmd": "subscribe"}, 1),
    ("not json", 1),
    ({"id": 17, "cmd": "list_subscriptions"}, 1),
]  # fmt: skip


def shape(frame: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree: the envelope's fields, and its ``msg`` except a book's levels and a
    ``seq``'s value (data frames before it consumed seqs, and the servers' data differ)."""
    msg: Any = frame.get("msg")
    if frame["type"] == "orderbook_snapshot":
        msg = (msg["market_ticker"], sorted(k for k in msg if not k.endswith("_dollars_fp")))
    return (sorted(frame), frame["type"], frame.get("id"), frame.get("sid"), msg)


async def _replies(url: str) -> list[tuple[Any, ...]]:
    """Each command's replies, in order; data frames (no ``id``) are skipped, except that
    the first order-book snapshot is awaited before going on (the replay's pass must have
    reached the market's book for ``get_snapshot`` to have one to send)."""
    out = []
    async with trio_websocket.open_websocket_url(url) as ws:
        for command, count in COMMANDS:
            text = command if isinstance(command, str) else orjson.dumps(command).decode()
            await ws.send_message(text)
            ident = None if isinstance(command, str) else command["id"]
            got: list[dict[str, Any]] = []
            snapshotted = ident != 1
            while len(got) < count or not snapshotted:
                frame = orjson.loads(await ws.get_message())
                if frame["type"] == "orderbook_snapshot" and "id" not in frame:
                    snapshotted = True
                elif frame.get("id") == ident and (ident is not None or frame["type"] == "error"):
                    got.append(frame)
            out.append(tuple(shape(f) for f in got))
    return out


async def test_the_served_capture_and_the_simulator_answer_commands_alike() -> None:
    with trio.fail_after(60):
        async with open_sim_exchange(
            markets=4, active=0, auth="none", start_us=PINNED_START_US
        ) as sim:
            event = WINDOW.rsplit("-", 1)[0]
            info = sim.engine.universe.new_info(
                SERIES[0], event, "00", PINNED_START_US, PINNED_START_US + 86_400_000_000
            )
            sim.engine.universe.add(info)
            simulated = await _replies(sim.ws_url)
            async with trio.open_nursery() as nursery:
                port = await nursery.start(
                    serve_recording, lambda: read_records([CAPTURE]), 0, ReplayFilter(), None
                )
                served = await _replies(f"ws://127.0.0.1:{port}{WS_PATH}")
                nursery.cancel_scope.cancel()
    assert served == simulated
    # And they are the exchange's replies (kalshi-api.md §2.2, §2.3).
    error = ["id", "msg", "type"]
    scoped = ["id", "msg", "seq", "sid", "type"]
    assert simulated == [
        ((["id", "msg", "type"], "subscribed", 1, None, {"channel": "orderbook_delta", "sid": 1}),),
        ((["id", "msg", "type"], "subscribed", 2, None, {"channel": "trade", "sid": 2}),
         (["id", "msg", "type"], "subscribed", 2, None, {"channel": "ticker", "sid": 3})),
        ((["id", "msg", "type"], "ok", 3, None, [{"channel": "orderbook_delta", "sid": 1},
          {"channel": "trade", "sid": 2}, {"channel": "ticker", "sid": 3}]),),
        ((scoped, "ok", 4, 1, {"market_tickers": [WINDOW, OTHER]}),),
        ((scoped, "ok", 5, 1, {"market_tickers": [WINDOW]}),),
        ((scoped, "error", 6, 2, {"code": 13, "msg": "Unsupported action"}),),
        ((error, "error", 7, None, {"code": 12,
          "msg": "Exactly one subscription ID is required"}),),
        ((scoped, "error", 8, 1, {"code": 15, "msg": "Action required"}),),
        ((scoped, "orderbook_snapshot", 9, 1, (WINDOW, ["market_id", "market_ticker"])),),
        ((["id", "seq", "sid", "type"], "unsubscribed", 10, 3, None),),
        ((error, "error", 11, None, {"code": 7, "msg": "Unknown subscription ID"}),),
        ((error, "error", 12, None, {"code": 4, "msg": "Subscription IDs required"}),),
        ((error, "error", 13, None, {"code": 5, "msg": "Unknown command"}),),
        ((error, "error", 14, None, {"code": 8, "msg": "Unknown channel name"}),),
        ((error, "error", 15, None, {"code": 14, "msg": "Market Ticker required"}),),
        ((error, "error", 16, None, {"code": 2, "msg": "Params required"}),),
        ((["msg", "type"], "error", None, None, {"code": 1, "msg": "Unable to process message"}),),
        ((["id", "msg", "type"], "ok", 17, None, [{"channel": "orderbook_delta", "sid": 1},
          {"channel": "trade", "sid": 2}]),),
    ]  # fmt: skip
