"""Why a book is unequal: everything the run knows of one market, for the failure message.

:func:`unequal_detail` reads, for each unequal market (at most ``cap``), the truth stream,
the production database and every gatherer's database, and returns one JSON-able document
per market, so that a failed CI run can be diagnosed from its log alone:

* ``levels``: the differing levels, ``{"yes"|"no": {"price": [truth, production]}}``
  (exact integer units; ``0`` for a level that is absent);
* ``truth``: the market's deltas at the exchange (count, last exchange time) and the last
  ones that touched a differing level (``[ts_us, side, price, delta]``), its lifecycle;
* ``prod``: the merge checkpoint (``dedup_books``), the stream's rows (count, last ``seq``,
  its snapshots), the ``merge_hole`` rows and the last deltas at a differing level;
* ``gatherers``: per gatherer, its WebSocket snapshots (``[conn, frame_no, snapshot_ts]``),
  its deltas per connection (``[count, last frame_no, last exchange_ts, last received_at]``),
  the gaps of those connections or of the market, whether its own book (its newest
  snapshot plus the deltas after it on that connection) equals the truth, and its last
  deltas at a differing level;
* ``context`` (once): the deduplicator's ``orderbook_deltas`` cursors and each gatherer's
  ingest watermark and newest receipt, to tell a late read from a lost row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from kalshi.book import OrderBook
from kalshi.dedup.segments import apply_change
from kalshi.errors import BookError
from kalshi.models.units import parse_price, parse_size
from kalshi.store import connect_db

__all__ = ["unequal_detail"]

_TAIL = 8  # last rows shown per list


def _diff(truth: OrderBook, prod: OrderBook | None) -> dict[str, dict[str, list[int]]]:
    out: dict[str, dict[str, list[int]]] = {}
    for name in ("yes", "no"):
        ours: dict[int, int] = getattr(truth, name)
        theirs: dict[int, int] = getattr(prod, name) if prod is not None else {}
        differ = {
            str(p): [ours.get(p, 0), theirs.get(p, 0)]
            for p in sorted(set(ours) | set(theirs))
            if ours.get(p, 0) != theirs.get(p, 0)
        }
        if differ:
            out[name] = differ
    return out


def _truth(path: Path, tickers: set[str]) -> dict[str, dict[str, Any]]:
    """Per market: every delta ``(ts_us, side, price, delta)`` and its lifecycle types."""
    out: dict[str, dict[str, Any]] = {t: {"deltas": [], "lifecycle": []} for t in tickers}
    needles = [t.encode() for t in tickers]
    with path.open("rb") as lines:
        for line in lines:
            if not any(n in line for n in needles):
                continue
            event = orjson.loads(line)
            msg = event.get("msg") or {}
            ticker = msg.get("market_ticker")
            if ticker not in out:
                continue
            if event["type"] == "orderbook_delta":
                side = msg["side"] == "yes"
                change = (event["ts_us"], side, parse_price(msg["price_dollars"]))
                out[ticker]["deltas"].append((*change, parse_size(msg["delta_fp"])))
            elif event["type"] != "ticker" and event["type"] != "trade":
                out[ticker]["lifecycle"].append([event["ts_us"], msg.get("event_type")])
    return out


def _touching(rows: list[tuple[Any, ...]], levels: dict[str, Any], side_at: int) -> list[Any]:
    """The last rows whose ``(side, price)`` (at ``side_at``, ``side_at + 1``) is a
    differing level."""
    hit = [
        list(r)
        for r in rows
        if str(r[side_at + 1]) in levels.get("yes" if r[side_at] else "no", {})
    ]
    return hit[-_TAIL:]


def _prod(url: str, ticker: str, levels: dict[str, Any]) -> dict[str, Any]:
    with connect_db(url) as db:
        ckpt = db.query(
            "SELECT seq, gatherer_id, conn_id, frame_no, received_at, segment_start,"
            " exchange_ts, waiting, last_side, last_price, last_size_delta"
            " FROM dedup_books WHERE ticker = %s",
            (ticker,),
        )
        snaps = db.query(
            "SELECT seq, gatherer_id, conn_id, frame_no, snapshot_ts FROM orderbook_snapshots"
            " WHERE ticker = %s AND source = 'ws' ORDER BY seq",
            (ticker,),
        )
        deltas = db.query(
            "SELECT seq, exchange_ts, gatherer_id, conn_id, frame_no, side, price, size_delta"
            " FROM orderbook_deltas WHERE ticker = %s ORDER BY seq",
            (ticker,),
        )
        holes = db.query(
            "SELECT start_ts, end_ts, kind, detail FROM gaps WHERE ticker = %s ORDER BY start_ts",
            (ticker,),
        )
    names = [
        "seq",
        "gatherer_id",
        "conn_id",
        "frame_no",
        "received_at",
        "segment_start",
        "exchange_ts",
        "waiting",
        "last_side",
        "last_price",
        "last_size_delta",
    ]
    return {
        "checkpoint": dict(zip(names, ckpt[0], strict=True)) if ckpt else None,
        "snapshots": [list(s) for s in snaps][-_TAIL:],
        "deltas": len(deltas),
        "last_seq": max([0, *(int(d[0]) for d in deltas), *(int(s[0]) for s in snaps)]),
        "last_delta": list(deltas[-1]) if deltas else None,
        "gaps": [list(h) for h in holes][-_TAIL:],
        "touching": _touching(deltas, levels, 5),
    }


def _gatherer(url: str, ticker: str, truth: OrderBook, levels: dict[str, Any]) -> dict[str, Any]:
    with connect_db(url) as db:
        snaps = db.query(
            "SELECT conn_id, frame_no, snapshot_ts, yes_bids::text, no_bids::text"
            " FROM orderbook_snapshots WHERE ticker = %s AND source = 'ws'"
            " ORDER BY snapshot_ts, conn_id, frame_no",
            (ticker,),
        )
        deltas = db.query(
            "SELECT conn_id, frame_no, exchange_ts, received_at, side, price, size_delta"
            " FROM orderbook_deltas WHERE ticker = %s ORDER BY conn_id, frame_no",
            (ticker,),
        )
        conns = sorted({int(s[0]) for s in snaps} | {int(d[0]) for d in deltas})
        gaps = db.query(
            "SELECT start_ts, end_ts, conn_id, sid, ticker, kind, detail FROM gaps"
            " WHERE ticker = %s OR (ticker IS NULL AND conn_id = ANY(%s)) ORDER BY start_ts",
            (ticker, conns),
        )
    per_conn: dict[str, list[int]] = {}
    for conn, frame, ts, received, *_ in deltas:
        n = per_conn.get(str(conn), [0, 0, 0, 0])
        per_conn[str(conn)] = [n[0] + 1, max(n[1], frame), max(n[2], ts), max(n[3], received)]
    own: OrderBook | None = None
    error = ""
    if snaps:
        conn, frame, _, yes, no = snaps[-1]
        own = OrderBook(ticker)
        own.yes = {p: s for p, s in orjson.loads(yes)}
        own.no = {p: s for p, s in orjson.loads(no)}
        for d in deltas:
            if d[0] == conn and d[1] > frame:
                try:
                    apply_change(own, bool(d[4]), int(d[5]), int(d[6]))
                except BookError as exc:
                    error = str(exc)
    return {
        "snapshots": [[s[0], s[1], s[2]] for s in snaps][-_TAIL:],
        "deltas_by_conn": per_conn,
        "gaps": [list(g) for g in gaps][-_TAIL:],
        "own_book_equal": own == truth if own is not None else None,
        "own_book_diff": _diff(truth, own) if own is not None and own != truth else None,
        "own_book_error": error or None,
        "touching": _touching(deltas, levels, 4),
    }


def _context(urls: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with connect_db(urls["prod"]) as db:
        out["cursors"] = {
            g: h
            for g, h in db.query(
                "SELECT gatherer_id, horizon FROM dedup_cursors"
                " WHERE table_name = 'orderbook_deltas' ORDER BY 1"
            )
        }
    for name, url in urls.items():
        if name == "prod":
            continue
        with connect_db(url) as db:
            out[name] = {
                "watermark": db.query("SELECT min(complete_before) FROM ingest_watermark")[0][0],
                "newest_received": db.query("SELECT max(received_at) FROM orderbook_deltas")[0][0],
                "newest_snapshot": db.query(
                    "SELECT max(snapshot_ts) FROM orderbook_snapshots WHERE source = 'ws'"
                )[0][0],
            }
    return out


def unequal_detail(
    unequal: list[str],
    truth_books: dict[str, OrderBook],
    production: dict[str, OrderBook],
    urls: dict[str, str],
    truth_path: Path,
    *,
    cap: int = 10,
) -> dict[str, Any]:
    """``{"context": ..., "markets": {ticker: detail}}`` for the first ``cap`` of
    ``unequal`` (see the module's docstring). ``urls``: every gatherer's database and
    ``"prod"``."""
    chosen = sorted(unequal)[:cap]
    truths = _truth(truth_path, set(chosen))
    markets: dict[str, Any] = {}
    for ticker in chosen:
        truth = truth_books[ticker]
        levels = _diff(truth, production.get(ticker))
        stream = truths[ticker]
        markets[ticker] = {
            "levels": levels,
            "in_production": ticker in production,
            "truth": {
                "deltas": len(stream["deltas"]),
                "last_ts_us": stream["deltas"][-1][0] if stream["deltas"] else None,
                "lifecycle": stream["lifecycle"][-_TAIL:],
                "touching": _touching(stream["deltas"], levels, 1),
            },
            "prod": _prod(urls["prod"], ticker, levels),
            "gatherers": {
                name: _gatherer(url, ticker, truth, levels)
                for name, url in urls.items()
                if name != "prod"
            },
        }
    return {"context": _context(urls), "markets": markets}
