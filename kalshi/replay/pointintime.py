"""The order book of one market at a point in time: from the journal, the database, or REST.

Time is local receive time (µs): the journal's ``wall_us``, the tables' ``received_at``.

* Journal: every frame up to the time goes through the live pipeline
  (:class:`~kalshi.replay.core.Replayer`); the answer is the pipeline's book.
* Production database (one with a deduplicator cursor): the market's merged stream by
  position (``seq``), across the deduplicator's source switches, up to the longest prefix
  received by the time (:func:`kalshi.dedup.books.book_before`, the export's reading);
  stale inside a ``merge_hole`` or after the market closed.
* Gatherer database: the latest ``source='ws'`` snapshot received at or before the time, plus the
  deltas **of the same connection session** (same ``gatherer_id`` and ``conn_id``) after
  it, in frame order, up to the time. Deltas of other sessions are left out on purpose:
  a market moved between connections is briefly carried by both, and the newer
  snapshot's session is the one whose deltas follow it; a reconnect always starts with a
  new snapshot, which then is the latest one. A recorded ``seq_gap`` on the snapshot's
  subscription, or a delta that would make a level negative, freezes the book and marks
  it stale, exactly as the live pipeline does until the next snapshot.
  The book is also stale when a recorded gap of its market covers the time or began after
  its snapshot (an ``outage``, a ``reconnect`` or ``stopped`` of its order-book connection,
  a production ``merge_hole``, any per-market gap but a trades ``backfill``; the detail
  gives the gap's kind, span and detail), when the market had closed by then
  (``markets.status`` closed and ``close_time`` reached), or past the gatherer's last
  recording (``nothing journaled from ... to ...: not recorded``, the journal's words).
  Production's book is also stale past what the deduplicator merged (its cursors).
* A market whose ``determined`` or ``settled`` event was received by the time has no book
  on either route: :class:`NoBook` ``T: no longer recorded at TIME: market determined at
  ...`` (the pipeline drops its book there); ``... : unsubscribed`` from a journal whose
  gatherer sent ``delete_markets`` for it. Also a market whose ``markets`` row (the
  database's; the journal's: from the REST listings replayed up to the time) is determined
  or later, from its ``settlement_ts`` (else its close and the row's ``updated_at``): a
  gatherer down at the event has only the listing.
* REST: the exchange's current book (signed ``GET /markets/{ticker}/orderbook``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson
from attrs import frozen

from kalshi.book import OrderBook
from kalshi.dedup.books import book_before, stream_cut
from kalshi.dedup.merge import DEDUP_ID
from kalshi.errors import BookError, HttpError, KalshiError, NetError, UnitError
from kalshi.journal import JournalProblem, JournalRecord
from kalshi.models.book import BookDelta, BookSnapshot, Side
from kalshi.models.rows import DeltaRow, GapRow, LifecycleRow, MarketRow, SnapshotRow
from kalshi.models.units import format_rfc3339_us, parse_rfc3339_us
from kalshi.net import RestClient
from kalshi.pipeline.outside import made_outside
from kalshi.replay.core import Replayer, ReplayFilter
from kalshi.replay.source import CAPTURE_GATHERER, STOP_GRACE_US, SeqCheck
from kalshi.store.query import Database

__all__ = [
    "BookAt",
    "NoBook",
    "book_from_db",
    "book_from_journal",
    "book_from_rest",
    "latest_ticker",
]

_BOOK_TABLES = frozenset({"orderbook_snapshots", "orderbook_deltas"})
# and the lifecycle events that end a market's book (the pipeline drops it: kalshi-api.md §5)
# and the ``markets`` rows of the journaled REST listing (a status determined or later)
_JOURNAL_TABLES = _BOOK_TABLES | {"market_lifecycle", "markets"}
_RETIRING = ("determined", "settled")


class NoBook(KalshiError):
    """No book to show: unknown ticker, nothing recorded by that time, or source down."""


@frozen
class BookAt:
    """A reconstructed book. ``as_of_us`` is the receive time of the last frame applied
    (the request time for REST); ``stale`` says the book is known to be incomplete."""

    book: OrderBook
    source: str
    as_of_us: int
    stale: bool = False
    detail: str = ""


def _when(at_us: int | None) -> str:
    return "now" if at_us is None else format_rfc3339_us(at_us, digits=6)


def _ended(event: str, exchange_ts: int) -> str:
    return f"market {event} at {format_rfc3339_us(exchange_ts, digits=6)}"


def _no_longer(ticker: str, at_us: int | None, why: str) -> str:
    """A market whose book ended (determined, settled, unsubscribed) before ``at_us``: one
    message for the journal and database routes (``docs/replay.md``, "Point-in-time")."""
    return f"{ticker}: no longer recorded at {_when(at_us)}: {why}"


def _not_recorded(since_us: int, at_us: int) -> str:
    """A time past the source's last recording: one message for the journal and database
    routes (``docs/replay.md``, "Point-in-time")."""
    return (
        f"nothing journaled from {format_rfc3339_us(since_us, digits=6)}"
        f" to {format_rfc3339_us(at_us, digits=6)}: not recorded"
    )


def _before_data(ticker: str, at_us: int) -> str:
    """No book of ``ticker`` by ``at_us``: one message for the journal and database routes
    (a journal read up to ``at_us`` cannot tell whether the market comes later)."""
    return f"{ticker}: no order book recorded at or before {_when(at_us)}"


def book_from_journal(
    items: Iterable[JournalRecord | JournalProblem],
    ticker: str,
    at_us: int | None = None,
    seq_check: SeqCheck = "auto",
) -> BookAt:
    """Replay ``items`` through the pipeline up to ``at_us`` (inclusive; ``None``: all),
    under the sequence rule ``seq_check`` (:class:`~kalshi.replay.core.Replayer`). Read
    with ``read_records(..., SourceOptions(until_us=at_us))`` so that reading stops
    shortly past ``at_us`` but goes on for the ``gap`` markers journaled later
    (``docs/replay.md``, "Gap markers past --at"). A stale book's ``detail`` is the
    pipeline's cause (a disconnect, a sequence gap, an invalid delta), else the earliest
    gap covering ``at_us``, else ``nothing journaled from ...`` when no record received
    within :data:`~kalshi.replay.source.STOP_GRACE_US` after ``at_us`` reached it (a
    later segment's gap markers prove nothing about ``at_us``). Raises :class:`NoBook`."""
    replayer = Replayer(
        ReplayFilter(tickers=frozenset({ticker}), tables=_JOURNAL_TABLES, end_us=at_us), seq_check
    )
    last: tuple[str, int] | None = None  # (gatherer_id, received_at) of the latest row
    applied = 0  # receive time of the last row the pipeline applied to a trusted book
    seen = False
    gaps: dict[tuple[object, ...], tuple[GapRow, str]] = {}  # gap markers read, with label
    labels: dict[tuple[str, int], str] = {}  # (gatherer_id, conn_id) -> connection label
    snap: tuple[int, str, int] | None = None  # latest snapshot: received_at, gatherer, conn
    ended = ""  # the first determined/settled event read: why the book was dropped
    listed: MarketRow | None = None  # the market's latest ``markets`` row read
    read_until = 0  # the latest receive time read within the stop (not a late gap marker's)
    stop = _FAR_FUTURE if at_us is None else at_us + STOP_GRACE_US
    for item in items:
        if isinstance(item, JournalRecord):
            if item.wall_us <= stop:
                read_until = max(read_until, item.wall_us)
            if item.label:
                labels[item.gatherer_id, item.conn_id] = item.label
            if item.kind == "gap" and "row" in item.detail:
                _note_gap(gaps, item)
        for _, row in replayer.feed(item):
            if isinstance(row, LifecycleRow):
                if row.event_type in _RETIRING and not ended:
                    ended = _ended(row.event_type, row.exchange_ts)
                continue
            if isinstance(row, MarketRow):
                listed = row
                continue
            assert isinstance(row, SnapshotRow | DeltaRow)
            last = (row.gatherer_id, row.received_at)
            if isinstance(row, SnapshotRow):
                snap = (row.received_at, row.gatherer_id, row.conn_id)
            if ticker not in replayer.processor(row.gatherer_id).stale:
                applied = row.received_at
        if not seen and isinstance(item, JournalRecord) and ticker.encode() in item.raw:
            seen = True
    if not ended and listed is not None:  # the database route's rule on the same row
        doc = orjson.loads(listed.payload)
        settlement = doc.get("settlement_ts") if isinstance(doc, dict) else None
        until = _FAR_FUTURE if at_us is None else at_us
        why = _determined_by(listed.status, listed.close_time, listed.updated_at, settlement, until)
        if why:
            raise NoBook(_no_longer(ticker, at_us, why))
    if last is None:
        if at_us is not None:  # the database's words for the same question
            raise NoBook(_before_data(ticker, at_us))
        if seen:
            raise NoBook(f"{ticker}: no order-book frame at or before {_when(at_us)}")
        raise NoBook(f"{ticker}: not in the journal")
    gatherer_id, as_of = last[0], applied or last[1]
    proc = replayer.processor(gatherer_id)
    book = proc.books.get(ticker)
    if book is None and ticker in proc.retired:
        raise NoBook(_no_longer(ticker, at_us, ended or "unsubscribed"))
    if book is None:
        raise NoBook(f"{ticker}: no snapshot at or before {_when(at_us)} (deltas only)")
    stale = ticker in proc.stale
    detail = proc.stale_cause.get(ticker, "stale since the last snapshot") if stale else ""
    if not stale and snap is not None:
        until = _FAR_FUTURE if at_us is None else at_us
        label = labels.get((snap[1], snap[2]), "")
        for gap, gap_label in sorted(gaps.values(), key=lambda g: g[0].start_ts):
            if _gap_covers(gap, gap_label, ticker, until, snap[0], snap[1], label):
                stale, detail = True, _gap_detail(gap.kind, gap.start_ts, gap.end_ts, gap.detail)
                break
        if not stale and at_us is not None and read_until < at_us:
            stale, detail = True, _not_recorded(read_until, at_us)
    return BookAt(book.copy(), "journal", as_of, stale, detail)


def _note_gap(gaps: dict[tuple[object, ...], tuple[GapRow, str]], item: JournalRecord) -> None:
    """Keep a journaled gap row (its later copy with an end closes it)."""
    try:
        ((_, gap),) = made_outside(item)  # the one reading of a gap marker's row
    except (KeyError, ValueError):
        return  # a malformed marker: the replay counts it (Replayer.feed)
    if not isinstance(gap, GapRow):
        return
    key = (gap.start_ts, gap.gatherer_id, gap.conn_id, gap.kind, gap.ticker or "")
    known = gaps.get(key)
    if known is None or (known[0].end_ts is None and gap.end_ts is not None):
        gaps[key] = (gap, item.label)


def _gap_covers(
    gap: GapRow, label: str, ticker: str, until: int, snap_at: int, gatherer: str, book_label: str
) -> bool:
    """The rule of ``_COVER_SQL`` on a journaled gap; a connection-wide ``reconnect`` or
    ``stopped`` counts when its connection has the label of the book's connection."""
    if gap.kind == "backfill" or gap.start_ts > until:
        return False
    if not (
        gap.end_ts is None
        or gap.end_ts > until
        or (gap.start_ts >= snap_at and gap.kind != "book_invalid")
    ):
        return False
    if gap.ticker is not None:
        return gap.ticker == ticker
    if gap.gatherer_id != gatherer or not gap.detail.startswith("orderbook-"):
        return False
    return gap.kind == "outage" or (label != "" and label == book_label)


def _gap_detail(kind: str, start_ts: int, end_ts: int | None, detail: str) -> str:
    """``<kind> from <start> to <end or 'now (open)'>: <detail>`` (times RFC 3339, µs)."""
    span = f"{format_rfc3339_us(start_ts, digits=6)} to " + (
        "now (open)" if end_ts is None else format_rfc3339_us(end_ts, digits=6)
    )
    return f"{kind} from {span}: {detail}"


_SNAPSHOT_SQL = """
SELECT received_at, gatherer_id, conn_id, frame_no, sid, seq, ticker,
       yes_bids::text, no_bids::text
FROM orderbook_snapshots
WHERE ticker = %s AND source = 'ws' AND received_at <= %s
ORDER BY received_at DESC, conn_id DESC, frame_no DESC
LIMIT 1
"""
_GAP_SQL = """
SELECT min(got_seq) FROM gaps
WHERE gatherer_id = %s AND conn_id = %s AND sid = %s AND kind = 'seq_gap'
  AND got_seq > %s AND end_ts <= %s
"""
_DELTAS_SQL = """
SELECT side, price, size_delta, received_at, seq FROM orderbook_deltas
WHERE ticker = %s AND gatherer_id = %s AND conn_id = %s AND frame_no > %s
  AND received_at <= %s
ORDER BY received_at, conn_id, frame_no
"""
# A capture's session read on into a later file: that file's connection (docs/replay.md,
# "Identity of a capture's rows"); its deltas are not in the snapshot's connection.
_LATER_FILE_SQL = """
SELECT conn_id, received_at FROM orderbook_deltas
WHERE ticker = %s AND gatherer_id = %s AND conn_id <> %s AND received_at > %s
  AND received_at <= %s
ORDER BY received_at LIMIT 1
"""
_FAR_FUTURE = 2**62
# A production database: the deduplicator has a cursor in it (the test of sql/011).
_PRODUCTION_SQL = "SELECT 1 FROM dedup_cursors LIMIT 1"
# A recorded gap of this market's book at the asked time (docs/data-model.md, "gaps"): the
# market's own rows (any kind but ``backfill``, which is about trades), the production's
# channel-wide rows of the order book (gatherer ``dedup``, detail ``orderbook_delta: ...``;
# its trade, ticker and lifecycle holes are not the book's), and a gatherer's
# connection-wide rows of an order-book connection (``orderbook-N: ...``): an ``outage``
# (the whole gatherer was down), or a ``reconnect``/``stopped`` of the connection that
# carried this market (its snapshot's connection, or one that snapshotted it after). A gap
# counts while it is open at the time or when it began after the snapshot the book is built
# from (no resnapshot came since; a ``book_invalid`` can also end with a delta that
# uncrosses the book).
_COVER_SQL = """
SELECT kind, start_ts, end_ts, detail FROM gaps g
WHERE start_ts <= %s AND kind <> 'backfill'
  AND (end_ts IS NULL OR end_ts > %s OR (start_ts >= %s AND kind <> 'book_invalid'))
  AND (ticker = %s
       OR (ticker IS NULL AND (
             (gatherer_id = 'dedup' AND detail LIKE 'orderbook_delta:%%')
             OR (gatherer_id = %s AND detail LIKE 'orderbook-%%'
                 AND (kind = 'outage' OR conn_id = %s
                      OR EXISTS (SELECT 1 FROM orderbook_snapshots s
                                 WHERE s.ticker = %s AND s.source = 'ws'
                                   AND s.gatherer_id = g.gatherer_id
                                   AND s.conn_id = g.conn_id))))))
ORDER BY start_ts
LIMIT 1
"""
_CLOSED = ("closed", "determined", "disputed", "amended", "finalized")
_SETTLED_SQL = """
SELECT event_type, exchange_ts FROM market_lifecycle
WHERE ticker = %s AND event_type IN ('determined', 'settled') AND received_at <= %s
ORDER BY exchange_ts
LIMIT 1
"""
# The market's ``markets`` row says it was determined (or later): the book ended by then
# (the REST listing's status; a gatherer down at the lifecycle event has no event).
_DETERMINED = ("determined", "disputed", "amended", "finalized")
_DETERMINED_SQL = """
SELECT status, close_time, updated_at, payload->>'settlement_ts' FROM markets
WHERE ticker = %s AND status = ANY(%s)
"""
# Evidence that a gatherer was recording at or after the time: its watermark passed it, or
# a row of it received then or later: of the tables indexed by receive time, or an
# order-book delta or snapshot found by exchange time (their primary keys) from
# STOP_GRACE_US before the time (a receive time within 10 s of its exchange time).
_RECORDED_SQL = """
SELECT EXISTS (SELECT 1 FROM ingest_watermark WHERE gatherer_id = %(g)s
                 AND complete_before > %(at)s)
    OR EXISTS (SELECT 1 FROM tickers WHERE received_at >= %(at)s AND gatherer_id = %(g)s)
    OR EXISTS (SELECT 1 FROM trades WHERE received_at >= %(at)s AND gatherer_id = %(g)s)
    OR EXISTS (SELECT 1 FROM market_lifecycle WHERE received_at >= %(at)s
                 AND gatherer_id = %(g)s)
    OR EXISTS (SELECT 1 FROM orderbook_deltas WHERE exchange_ts >= %(from)s
                 AND received_at >= %(at)s AND gatherer_id = %(g)s)
    OR EXISTS (SELECT 1 FROM orderbook_snapshots WHERE snapshot_ts >= %(from)s
                 AND received_at >= %(at)s AND gatherer_id = %(g)s)
"""
# The gatherer's last recorded time before it: the latest of those before the time (the
# deltas': the latest received within STOP_GRACE_US of the newest exchange time before it).
_LAST_RECORDED_SQL = """
WITH newest AS (
    SELECT max(exchange_ts) AS ts FROM orderbook_deltas
    WHERE exchange_ts < %(at)s + %(grace)s AND gatherer_id = %(g)s)
SELECT greatest(
    (SELECT max(complete_before) FROM ingest_watermark WHERE gatherer_id = %(g)s
       AND complete_before <= %(at)s),
    (SELECT max(received_at) FROM tickers WHERE received_at < %(at)s AND gatherer_id = %(g)s),
    (SELECT max(received_at) FROM trades WHERE received_at < %(at)s AND gatherer_id = %(g)s),
    (SELECT max(received_at) FROM market_lifecycle WHERE received_at < %(at)s
       AND gatherer_id = %(g)s),
    (SELECT max(d.received_at) FROM orderbook_deltas d, newest
       WHERE d.exchange_ts >= newest.ts - 2 * %(grace)s AND d.exchange_ts <= newest.ts
         AND d.received_at < %(at)s AND d.gatherer_id = %(g)s),
    (SELECT max(received_at) FROM orderbook_snapshots WHERE ticker = %(t)s
       AND received_at < %(at)s AND gatherer_id = %(g)s),
    (SELECT max(s.received_at) FROM orderbook_snapshots s, newest
       WHERE s.snapshot_ts >= newest.ts - 2 * %(grace)s AND s.snapshot_ts <= newest.ts
         AND s.received_at < %(at)s AND s.gatherer_id = %(g)s))
"""
# Production: the gatherer time the deduplicator merged the order book up to (its cursors).
_MERGED_SQL = "SELECT max(horizon) FROM dedup_cursors WHERE table_name = 'orderbook_deltas'"
_CLOSED_SQL = """
SELECT status, close_time FROM markets
WHERE ticker = %s AND status = ANY(%s) AND close_time <= %s
"""


def latest_ticker(db: Database, at_us: int | None = None) -> str:
    """A market whose book is live: the market of the newest order-book delta stored (by
    exchange time), or with ``at_us`` (µs, a receive time like ``--at``) of the newest
    received by then. Raises :class:`NoBook` when there is none."""
    if at_us is None:
        found = db.query("SELECT ticker FROM orderbook_deltas ORDER BY exchange_ts DESC LIMIT 1")
    else:
        found = db.query(
            "SELECT ticker FROM orderbook_deltas WHERE received_at <= %s"
            " ORDER BY received_at DESC LIMIT 1",
            (at_us,),
        )
    if not found:
        raise NoBook(f"no order-book delta stored at or before {_when(at_us)}: give --ticker")
    return str(found[0][0])


def book_from_db(db: Database, ticker: str, at_us: int | None = None) -> BookAt:
    """The book of ``ticker`` at ``at_us`` (``None``: latest) from the stored rows: a
    production database's (one with a deduplicator cursor) by :func:`_merged_book`, a
    gatherer's from its latest WS snapshot and that session's deltas (a capture's book
    whose deltas go on in a later file's connection: stale from there). Raises
    :class:`NoBook`."""
    until = _FAR_FUTURE if at_us is None else at_us
    settled = db.query(_SETTLED_SQL, (ticker, until))
    if settled:  # as the journal route: the pipeline dropped the book at that event
        raise NoBook(_no_longer(ticker, at_us, _ended(*settled[0])))
    determined = _determined(db, ticker, until)
    if determined:  # the same answer from the listing of a gatherer down at the event
        raise NoBook(_no_longer(ticker, at_us, determined))
    if db.query(_PRODUCTION_SQL):
        return _merged_book(db, ticker, at_us, until)
    found = db.query(_SNAPSHOT_SQL, (ticker, until))
    if not found:
        if at_us is not None:
            raise NoBook(_before_data(ticker, at_us))
        if db.query("SELECT 1 FROM orderbook_snapshots WHERE ticker = %s LIMIT 1", (ticker,)):
            raise NoBook(f"{ticker}: no WebSocket snapshot at or before {_when(at_us)}")
        raise NoBook(f"{ticker}: no order book stored for this ticker")
    received_at, gatherer_id, conn_id, frame_no, sid, seq, _, yes, no = found[0]
    snap = BookSnapshot(ticker, "", _levels(yes), _levels(no))
    book = OrderBook.from_snapshot(snap)
    as_of: int = received_at
    stop_seq: int | None = None
    if sid is not None and seq is not None:
        gap = db.query(_GAP_SQL, (gatherer_id, conn_id, sid, seq, until))
        stop_seq = gap[0][0] if gap else None
    stale, detail = False, ""
    rows = db.query(_DELTAS_SQL, (ticker, gatherer_id, conn_id, frame_no, until))
    for side, price, size_delta, delta_at, delta_seq in rows:
        if stop_seq is not None and delta_seq >= stop_seq:
            stale, detail = True, f"sequence gap at seq {stop_seq} since the last snapshot"
            break
        try:
            book.apply_delta(
                BookDelta(ticker, "", Side.YES if side else Side.NO, price, size_delta)
            )
        except BookError as exc:
            stale, detail = True, str(exc)
            break
        as_of = delta_at
    if stop_seq is not None and not stale:
        stale, detail = True, f"sequence gap at seq {stop_seq} since the last snapshot"
    if not stale:
        stale, detail = _covered(db, ticker, until, received_at, gatherer_id, conn_id)
    if not stale and gatherer_id == CAPTURE_GATHERER:
        later = db.query(_LATER_FILE_SQL, (ticker, gatherer_id, conn_id, received_at, until))
        if later:
            other, since = later[0]
            stale = True
            detail = (
                f"the capture's deltas go on in connection {other} (another file) from "
                f"{format_rfc3339_us(since, digits=6)} without a snapshot there: the "
                "database follows a book within one file's connection (--source journal "
                "follows the session)"
            )
    if not stale and at_us is not None:
        stale, detail = _past_recording(db, ticker, gatherer_id, at_us)
    return BookAt(book, "db", as_of, stale, detail)


def _merged_book(db: Database, ticker: str, at_us: int | None, until: int) -> BookAt:
    """Production's book: its merged stream of the market (docs/dedup.md, "The order-book
    stream"; whatever gatherer each row came from, across the deduplicator's source
    switches) by position, up to the longest prefix received by ``until``
    (:func:`~kalshi.dedup.books.stream_cut`), read as the export reads a window's start
    (:func:`~kalshi.dedup.books.book_before`)."""
    cut = stream_cut(db, ticker, until)
    try:
        found = book_before(db, ticker, cut)
    except BookError as exc:  # production inconsistent: say so, never a wrong book
        raise NoBook(f"{ticker}: production's stream cannot be applied: {exc}") from None
    if found.snapshot_at is None:
        if at_us is not None:
            raise NoBook(_before_data(ticker, at_us))
        if db.query("SELECT 1 FROM orderbook_snapshots WHERE ticker = %s LIMIT 1", (ticker,)):
            raise NoBook(f"{ticker}: no WebSocket snapshot at or before {_when(at_us)}")
        raise NoBook(f"{ticker}: no order book stored for this ticker")
    stale, detail = _covered(db, ticker, until, found.snapshot_at, DEDUP_ID, 0)
    if not stale and at_us is not None:
        merged = db.query(_MERGED_SQL)[0][0]
        if merged is not None and merged < at_us:  # the deduplicator has not got that far
            stale, detail = True, _not_recorded(merged, at_us)
    return BookAt(found.book, "db", found.received_at, stale, detail)


def _determined(db: Database, ticker: str, until: int) -> str:
    """Why the book had ended by ``until`` (µs) by the market's ``markets`` row (status
    determined or later, :data:`_DETERMINED`), else ``""``: ``market settled at T`` from
    its ``settlement_ts`` (the REST payload's, kalshi-api.md "Market object") when given,
    else ``market <status> at or before T``, T the later of its ``close_time`` and the
    row's ``updated_at`` (when the gatherer recorded that status)."""
    found = db.query(_DETERMINED_SQL, (ticker, list(_DETERMINED)))
    if not found:
        return ""
    status, close_time, updated_at, settlement = found[0]
    return _determined_by(status, close_time, updated_at, settlement, until)


def _determined_by(
    status: str, close_time: int | None, updated_at: int, settlement: object, until: int
) -> str:
    """The rule of :func:`_determined` on one ``markets`` row's facts (its status, close
    time, ``updated_at`` and payload ``settlement_ts``), for both routes."""
    if status not in _DETERMINED:
        return ""
    if settlement:
        try:
            settled_at = parse_rfc3339_us(settlement)
        except UnitError:
            settled_at = None  # not a time: the row's own times decide
        if settled_at is not None:
            return _ended("settled", settled_at) if settled_at <= until else ""
    end = max(close_time or 0, updated_at)
    if end > until:
        return ""
    return f"market {status} at or before {format_rfc3339_us(end, digits=6)}"


def _past_recording(db: Database, ticker: str, gatherer_id: str, at_us: int) -> tuple[bool, str]:
    """``(True, why)`` when the gatherer database holds nothing of ``gatherer_id``
    recorded at or after ``at_us`` (its watermark, a row of the indexed tables, a book row
    of ``ticker``): the gatherer had stopped, as the journal route's ``nothing journaled``
    (``docs/replay.md``, "Point-in-time")."""
    named = {"g": gatherer_id, "at": at_us, "t": ticker, "from": at_us - STOP_GRACE_US}
    named["grace"] = STOP_GRACE_US
    if _query_named(db, _RECORDED_SQL, named)[0][0]:
        return False, ""
    last = _query_named(db, _LAST_RECORDED_SQL, named)[0][0]
    return True, _not_recorded(last if last is not None else at_us, at_us)


def _covered(
    db: Database, ticker: str, until: int, snap_at: int, gatherer_id: str, conn_id: int
) -> tuple[bool, str]:
    """``(True, why)`` when a recorded gap of the market's book covers ``until`` (µs) or
    began after the snapshot received at ``snap_at``, or the market had closed
    (``markets``) by then."""
    params = (until, until, snap_at, ticker, gatherer_id, conn_id, ticker)
    found = db.query(_COVER_SQL, params)
    if found:
        kind, start, end, why = found[0]
        return True, _gap_detail(kind, start, end, why)
    closed = db.query(_CLOSED_SQL, (ticker, list(_CLOSED), until))
    if closed:
        status, close_time = closed[0]
        return True, f"market {status}: closed at {format_rfc3339_us(close_time, digits=6)}"
    return False, ""


def _query_named(db: Database, statement: str, named: dict[str, object]) -> list[tuple[Any, ...]]:
    """``statement`` with ``%(name)s`` placeholders, run with positional parameters."""
    names = re.findall(r"%\((\w+)\)s", statement)
    return db.query(re.sub(r"%\(\w+\)s", "%s", statement), [named[n] for n in names])


def _levels(text: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(p), int(s)) for p, s in orjson.loads(text))


async def book_from_rest(rest: RestClient, ticker: str, now_us: int) -> BookAt:
    """The exchange's current book. ``now_us`` stamps it (the caller's wall clock)."""
    try:
        snap = await rest.orderbook(ticker)
    except HttpError as exc:
        if exc.status == 404:
            raise NoBook(f"{ticker}: unknown ticker (REST 404)") from None
        raise NoBook(f"{ticker}: REST error: {exc}") from None
    except NetError as exc:
        raise NoBook(f"REST unreachable ({rest.base_url}): {exc}") from None
    return BookAt(OrderBook.from_snapshot(snap), "rest", now_us)
