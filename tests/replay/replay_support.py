"""Helpers for the replay tests: literal frames, a scripted session, journals written with
the real JournalWriter, and store configs pointing spool dirs at a temporary directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import trio

from kalshi.config import ByteSize, Duration, JournalConfig
from kalshi.journal import JournalRecord, JournalWriter
from kalshi.models.rows import Row
from kalshi.store import connect_db
from kalshi.store.schema import TABLES
from tests.db.conftest import store_config as store_config  # re-exported

FRAMES = Path(__file__).parent.parent / "data" / "frames"
GATHERER = "g-1"
T1 = "KXA-26NOV24-T1"
T2 = "KXA-26NOV24-T2"
OB_CONN = 1_795_561_140_000_000  # µs, as the gatherer assigns them (wall clock at connect)
TRADE_CONN = OB_CONN + 1
BASE_US = OB_CONN + 1000


def kalshi(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m kalshi ARGS`` in ``cwd``, text out, ``stdin`` fed as text; never raises on
    a non-zero exit (the tests read ``returncode``)."""
    return subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        capture_output=True,
        input=None if stdin is None else stdin.decode(),
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def literal(name: str) -> bytes:
    return (FRAMES / f"{name}.json").read_bytes().strip()


def frame(kind: str, sid: int, seq: int | None, **msg: object) -> bytes:
    envelope: dict[str, object] = {"type": kind, "sid": sid, "msg": msg}
    if seq is not None:
        envelope["seq"] = seq
    return orjson.dumps(envelope)


def subscribed(sid: int, channel: str, ident: int = 1) -> bytes:
    return orjson.dumps(
        {"id": ident, "type": "subscribed", "msg": {"channel": channel, "sid": sid}}
    )


def snapshot(
    sid: int,
    seq: int,
    ticker: str,
    yes: Sequence[tuple[str, str]] = (),
    no: Sequence[tuple[str, str]] = (),
) -> bytes:
    msg: dict[str, object] = {"market_ticker": ticker, "market_id": f"id-{ticker}"}
    if yes:
        msg["yes_dollars_fp"] = [list(level) for level in yes]
    if no:
        msg["no_dollars_fp"] = [list(level) for level in no]
    return frame("orderbook_snapshot", sid, seq, **msg)


def delta(
    sid: int, seq: int, ticker: str, price: str, size: str, side: str = "yes", ts_ms: int = 0
) -> bytes:
    msg: dict[str, object] = {
        "market_ticker": ticker,
        "market_id": f"id-{ticker}",
        "price_dollars": price,
        "delta_fp": size,
        "side": side,
    }
    if ts_ms:
        msg["ts_ms"] = ts_ms
    return frame("orderbook_delta", sid, seq, **msg)


def trade(sid: int, seq: int, ticker: str, trade_id: str, price: str, count: str) -> bytes:
    return frame(
        "trade",
        sid,
        seq,
        trade_id=trade_id,
        market_ticker=ticker,
        yes_price_dollars=price,
        no_price_dollars="0.5000",
        count_fp=count,
        taker_side="yes",
        ts=1_795_561_141,
        ts_ms=1_795_561_141_250,
    )


# One journal entry: ("in"|"out", conn_id, frame_no, wall_us, raw) or
# ("marker", conn_id, kind, wall_us, detail).
Entry = tuple[Any, ...]


def scripted_session() -> list[Entry]:
    """Two connections: an order book (two markets, a seq gap and its resnapshot, an
    invalid frame) and trades; a disconnect at the end."""
    ob, tr = OB_CONN, TRADE_CONN
    t = BASE_US
    ob_frames = [
        subscribed(1, "orderbook_delta"),
        snapshot(1, 1, T1, yes=[("0.4000", "10.00"), ("0.4200", "5.00")], no=[("0.5500", "7.00")]),
        snapshot(1, 2, T2, yes=[("0.1000", "1.00")]),
        delta(1, 3, T1, "0.4200", "-2.00", ts_ms=1_795_561_141_100),
        delta(1, 4, T2, "0.6000", "3.50", side="no", ts_ms=1_795_561_141_200),
        b'{"type":"orderbook_delta","sid":1,"seq":',  # a malformed frame from the exchange
        delta(1, 7, T1, "0.4000", "1.00", ts_ms=1_795_561_141_300),  # seq 5, 6 missing
        snapshot(1, 8, T1, yes=[("0.4000", "11.00")]),
        delta(1, 9, T1, "0.4100", "2.00", ts_ms=1_795_561_141_400),
    ]
    trade_frames = [
        subscribed(1, "trade", ident=1),
        trade(1, 1, T1, "tr-1", "0.4200", "3.00"),
        trade(1, 2, T2, "tr-2", "0.1100", "1.00"),
    ]
    entries: list[Entry] = [
        ("marker", ob, "connect", t, {"label": "orderbook-0", "channels": ["orderbook_delta"]}),
        (
            "out",
            ob,
            0,
            t + 1,
            b'{"id":1,"cmd":"subscribe","params":{"channels":["orderbook_delta"]}}',
        ),
        ("marker", tr, "connect", t + 2, {"label": "trade-0", "channels": ["trade"]}),
    ]
    for n, raw in enumerate(ob_frames, 1):
        entries.append(("in", ob, n, t + 100 * n, raw))
        if n <= len(trade_frames):
            entries.append(("in", tr, n, t + 100 * n + 50, trade_frames[n - 1]))
    entries.append(("marker", ob, "disconnect", t + 5000, {"reason": "test over"}))
    return entries


def records(entries: list[tuple[object, ...]]) -> list[JournalRecord]:
    out = []
    for entry in entries:
        if entry[0] == "marker":
            _, conn_id, kind, wall, detail = entry
            out.append(
                JournalRecord(GATHERER, conn_id, 0, "local", wall, wall, kind, detail=detail)
            )  # type: ignore[arg-type]
        else:
            direction, conn_id, frame_no, wall, raw = entry
            out.append(
                JournalRecord(GATHERER, conn_id, frame_no, direction, wall, wall, "frame", raw)
            )  # type: ignore[arg-type]
    return out


async def write_journal(
    directory: Path,
    entries: Sequence[Entry],
    *,
    compress: bool = False,
    gatherer: str = GATHERER,
    flush_after: int | None = None,
) -> list[Path]:
    """Record ``entries`` through a real :class:`JournalWriter`; return the files.
    ``flush_after=n`` flushes after the first n entries too (a zstd frame boundary)."""
    cfg = JournalConfig(
        dir=str(directory),
        rotate_bytes=ByteSize(256 << 20),
        rotate_interval=Duration(3600.0),
        compress=compress,
    )
    writer = JournalWriter(
        cfg, gatherer, wall_us=lambda: 1_795_561_140_000_000, flush_interval=3600
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for i, entry in enumerate(entries):
                if i == flush_after:
                    await writer.flush()
                if entry[0] == "marker":
                    _, conn_id, kind, wall, detail = entry
                    writer.record_marker(conn_id, kind, wall, wall, **detail)
                else:
                    direction, conn_id, frame_no, wall, raw = entry
                    writer.record_frame(conn_id, frame_no, direction, wall, wall, raw)
            await writer.flush()
            nursery.cancel_scope.cancel()
    return list(writer.files_closed)


class ListSink:
    """Collects replayed rows in order."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, Row]] = []

    async def put_all(self, rows: list[tuple[str, Row]]) -> None:
        self.rows.extend(rows)


def stored(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows in key order, JSON columns parsed (PostgreSQL reformats them)."""
    out: dict[str, list[tuple[object, ...]]] = {}
    with connect_db(url) as db:
        for name, spec in TABLES.items():
            out[name] = [
                tuple(
                    orjson.loads(v) if c in spec.json_columns and v is not None else v
                    for c, v in zip(spec.columns, row, strict=True)
                )
                for row in db.fetch_rows(name)
            ]
            _sort(name, out[name])
    return out


def as_stored(rows: Sequence[tuple[str, Row]]) -> dict[str, list[tuple[object, ...]]]:
    """Rows as :func:`stored` returns them (same order, JSON parsed)."""
    out: dict[str, list[tuple[object, ...]]] = {name: [] for name in TABLES}
    for table, row in rows:
        spec = TABLES[table]
        out[table].append(
            tuple(
                orjson.loads(v) if c in spec.json_columns and isinstance(v, str) else v
                for c, v in zip(spec.columns, row, strict=True)
            )
        )
    for table, values in out.items():
        _sort(table, values)
    return out


def _sort(table: str, values: list[tuple[object, ...]]) -> None:
    spec = TABLES[table]
    names = (
        spec.conflict[1:-1]
        .replace("(COALESCE(ticker, ''))", "ticker")
        .replace("(COALESCE(sid, 0))", "sid")
        .split(",")
    )
    key = [spec.columns.index(name.strip()) for name in names]
    values.sort(key=lambda r: tuple("" if r[i] is None else str(r[i]).zfill(20) for i in key))
