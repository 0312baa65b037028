"""The gatherer's REST tasks: market discovery and re-listing, trade backfill after a
disconnect or a trade ``seq`` gap, and the periodic order-book snapshot poller."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import Any

import trio
from attrs import Factory, define

from kalshi.book import OrderBook
from kalshi.errors import NetError, PaginationError
from kalshi.gather import metrics
from kalshi.gather.context import Backfill, GatherContext
from kalshi.gather.layout import Layout
from kalshi.gather.problems import named
from kalshi.gather.registry import MarketRegistry
from kalshi.models.book import BookSnapshot
from kalshi.models.rows import GapRow
from kalshi.net import RestClient
from kalshi.pipeline import trade_row
from kalshi.pipeline.outside import MARKETS_PATH, ORDERBOOKS_PATH, polled_row
from kalshi.retry import retry

__all__ = [
    "backfill_trades",
    "list_markets",
    "poll_snapshots",
    "release_matched",
    "relist_forever",
    "settle_mismatches",
    "snapshot_pass",
]

ORDERBOOKS_PER_REQUEST = 100  # GET /markets/orderbooks takes 1-100 tickers (kalshi-api.md §4.5)
# The ``status`` filters of GET /markets that list every market still able to produce data
# (kalshi-api.md §4.4: initialized, active, inactive, and closed to amended); ``settled``
# (finalized) is asked only for the markets settled since the listing before.
LISTED_STATUSES = ("unopened", "open", "paused", "closed")
# Slack on the settled window and on forgetting, for the exchange's clock against ours.
SETTLED_MARGIN_S = 60
# Between passes, how often the REST answers matched late are let go (their watermark holds).
MATCHED_CHECK_S = 1.0

log = logging.getLogger("kalshi.gather.rest")


async def list_markets(
    ctx: GatherContext, rest: RestClient, registry: MarketRegistry, settled_since: int | None = None
) -> int:
    """One listing of ``/markets`` into the registry: every market that can still produce
    data (``status`` of :data:`LISTED_STATUSES`, one request series each), then those
    settled at or after ``settled_since`` (Unix s; none when ``None``), so that a market
    settled without its lifecycle event reaching us is held as finalized. Markets settled
    before are never asked for: the listing does not grow with every market since the
    historical cutoff (kalshi-api.md §4.4). Returns how many distinct markets were listed."""
    listed: set[str] = set()
    queries: list[dict[str, Any]] = [{"status": status} for status in LISTED_STATUSES]
    if settled_since is not None:
        queries.append({"status": "settled", "min_settled_ts": settled_since})
    for query in queries:
        await _list(ctx, rest, registry, query, listed)
    metrics.follow_registry(registry.counts)
    return len(listed)


async def _list(
    ctx: GatherContext,
    rest: RestClient,
    registry: MarketRegistry,
    query: dict[str, Any],
    listed: set[str],
) -> None:
    async for params, body, page in rest.market_bodies(**query):
        listed.update(market.ticker for market in page)
        now = ctx.wall_us()
        rows = registry.upsert(page, now)
        if rows and ctx.journal is not None:
            # Only pages that change the registry (a page of unchanged markets changes
            # nothing in a replay's either): a re-list every few minutes costs no journal.
            # With the shard: a replay's registry keeps the same markets.
            ctx.journal.record_rest(
                now, ctx.mono_us(), body, path=MARKETS_PATH, params=params, shard=ctx.cfg.shard
            )
        for row in rows:
            await ctx.sink.put("markets", row)
        await ctx.flush_ended()  # refusal gaps of markets this page retired


async def relist_forever(
    ctx: GatherContext,
    rest: RestClient,
    registry: MarketRegistry,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Discover every market (started with the count once listed), then re-list every
    ``relist_interval`` to catch what lifecycle messages missed. Failures back off.

    Each listing asks for the markets settled since the last complete one began (the
    first: one interval back), or since the oldest open trade backfill window began if
    earlier, less :data:`SETTLED_MARGIN_S`; once it is complete, the markets held as
    finalized since before that window are forgotten
    (:meth:`~kalshi.pipeline.registry.MarketRegistry.forget`): no later listing returns
    them, so the registry holds a finalized market for about three intervals, longer
    while a backfill window that may hold its trades is open."""
    interval = float(ctx.cfg.relist_interval)
    started = False
    since: int | None = None  # Unix s: settled markets from here on are listed

    def failed(exc: BaseException, attempt: int) -> None:
        log.warning("market listing failed: %s", exc)
        ctx.listing_error = str(exc)

    while True:
        begun = ctx.wall_us() // 1_000_000 - SETTLED_MARGIN_S
        window = since if since is not None else begun - math.ceil(interval)
        oldest = _oldest_backfill_s(ctx)
        if oldest is not None:  # its trades' markets are held until it closes
            window = min(window, oldest - SETTLED_MARGIN_S)
        try:
            listed = await retry(
                functools.partial(list_markets, ctx, rest, registry, window),
                transient=(NetError,),
                attempts=None,
                initial=1.0,
                maximum=max(1.0, interval),
                on_failure=failed,
            )
        except PaginationError as exc:
            # the pages before the repeat are in the registry; looping again now would
            # repeat too, so carry on with them and list again at the next interval
            metrics.PAGINATION_ERRORS.labels("/markets").inc()
            log.error("market listing stopped early: %s", exc)
            listed = len(registry.markets)
        else:
            # complete: a market finalized before ``begun`` (less the clock margin) settled
            # before the next listing's window, so no listing returns it again; nor one
            # whose trades an open backfill window may still hold (a sharded gatherer
            # stores the trades of the markets its registry holds)
            cutoff = begun - SETTLED_MARGIN_S
            oldest = _oldest_backfill_s(ctx)
            if oldest is not None:
                cutoff = min(cutoff, oldest - SETTLED_MARGIN_S)
            forgotten = registry.forget(cutoff * 1_000_000)
            if forgotten:
                # a replay's registry forgets them at the same point (docs/journal.md)
                ctx.marker(0, "forget", before_us=cutoff * 1_000_000)
                metrics.follow_registry(registry.counts)
                log.info("forgot %d finalized markets", len(forgotten))
            since = begun
        ctx.listing_error = None
        ctx.listed = True
        log.info("listed %d markets, %d live", listed, len(registry.live))
        if not started:
            task_status.started(listed)
            started = True
        await trio.sleep(interval)


def _oldest_backfill_s(ctx: GatherContext) -> int | None:
    """The start (Unix s) of the oldest trade backfill window still open, if any."""
    starts = [row.start_ts for rows in ctx.backfills.values() for row in rows]
    return min(starts) // 1_000_000 if starts else None


async def backfill_trades(
    ctx: GatherContext,
    rest: RestClient,
    registry: MarketRegistry,
    windows: trio.MemoryReceiveChannel[Backfill],
) -> None:
    """For each ``(from_us, to_us, key)`` window, store every REST trade in it (second
    resolution, widened by one second each side). The trades table's key makes trades the
    live feed also delivered collide, so each trade is stored once. Once the database
    acknowledged the window's rows, its open ``backfill`` gaps end at ``to_us`` and the
    store's watermark hold ``key`` goes (:meth:`GatherContext.backfilled`); until then
    they stay, in memory and in the database, so a restart fetches the window again.
    A window whose pages loop keeps the trades before the repeat and its gap open."""
    async with windows, trio.open_nursery() as closing:
        async for start, end, key in windows:
            try:
                count = await retry(
                    functools.partial(_backfill, ctx, rest, registry, start, end),
                    transient=(NetError,),
                    attempts=None,
                    initial=0.5,
                    maximum=30.0,
                    on_failure=_backfill_failed,
                )
            except PaginationError as exc:  # the trades before the repeat are stored
                metrics.PAGINATION_ERRORS.labels("/markets/trades").inc()
                log.error("trade backfill of %d..%d stopped early: %s", start, end, exc)
                if key not in ctx.backfills:  # a window nobody recorded: record it
                    detail = f"trade backfill stopped early: {exc}"
                    await ctx.backfill_due(key, start, 0, detail)
                ctx.release(key)  # open: a later start fetches it again
                continue
            log.info("backfilled %d trades for %d..%d", count, start, end)
            closing.start_soon(_close_when_committed, ctx, key, end)


def _backfill_failed(exc: BaseException, attempt: int) -> None:
    log.warning("trade backfill failed, retrying: %s", exc)


async def _close_when_committed(ctx: GatherContext, key: object, end: int) -> None:
    """End ``key``'s backfill gaps at ``end`` once its trades are committed."""
    if ctx.committed is not None:
        await ctx.committed()
    await ctx.backfilled(key, end)


async def _backfill(
    ctx: GatherContext, rest: RestClient, registry: MarketRegistry, start: int, end: int
) -> int:
    """Store the trades of ``[start, end]`` (µs); each page's body is journaled first
    (``kind: rest``, with the trade ids another shard stores), its rows received then."""
    count = 0
    sharded = registry.shard.count > 1
    pages = rest.trade_pages(min_ts=start // 1_000_000 - 1, max_ts=end // 1_000_000 + 1)
    async for params, body, page in pages:
        now = ctx.wall_us()
        kept = [t for t in page if not sharded or t.ticker in registry.markets]
        if ctx.journal is not None:
            skipped = [t.trade_id for t in page if sharded and t.ticker not in registry.markets]
            ctx.journal.record_rest(
                now, ctx.mono_us(), body, path="/markets/trades", params=params, skipped=skipped
            )
        count += len(kept)
        for trade in kept:
            await ctx.sink.put("trades", trade_row(trade, ctx.gatherer_id, now, "rest"))
    metrics.BACKFILLED_TRADES.inc(count)
    return count


async def poll_snapshots(
    ctx: GatherContext, rest: RestClient, registry: MarketRegistry, layout: Layout
) -> None:
    """Every ``snapshot_poller.interval`` from the start (the first pass one interval in):
    REST order books of the live markets (at most ``max_markets``), stored with
    ``source='rest'`` and compared with the live books (:func:`snapshot_pass`); each answer
    the live book has not matched by ``snapshot_poller.settle_after`` after its reply is a
    difference, its book resnapshotted (:func:`settle_mismatches`, run by
    :func:`_settle_forever` alongside the passes).

    Books come 100 markets per request (``GET /markets/orderbooks``, kalshi-api.md §4.5), so
    a pass over 250 000 markets is 2 500 requests: 250 s at ``rest_rate_limit: 10``, with
    ``snapshot_poller.in_flight`` requests in flight so that their latency does not add up
    (one after another, a pass took 991 s in the 30-minute run of docs/scaling.md). Passes
    start on a fixed schedule; a pass longer than the interval is logged at WARNING
    (``kalshi_snapshot_pass_seconds``) and the next one starts when it ends, never two at
    once (and after the last pass's answers are settled)."""
    cfg = ctx.cfg.snapshot_poller
    interval = float(cfg.interval)
    settling = trio.Lock()  # one settling at a time: a watch ends before its ticker's next
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_settle_forever, ctx, layout, settling)
        due = trio.current_time() + interval
        while True:
            await trio.sleep_until(due)
            pending = [w.due for w in ctx.processor.watches.values() if w.due is not None]
            await trio.sleep_until(max(pending, default=due))  # a late pass's last answers
            async with settling:  # whatever is left before the new pass watches again
                await settle_mismatches(ctx, layout)
            tickers = sorted(registry.live)
            if cfg.max_markets is not None:
                tickers = tickers[: cfg.max_markets]
            started = trio.current_time()
            await snapshot_pass(ctx, rest, tickers, cfg.in_flight)
            took = trio.current_time() - started
            metrics.SNAPSHOT_PASS.set(took)
            level = logging.WARNING if took > interval else logging.INFO
            log.log(
                level,
                "snapshot pass: %d markets in %.1fs (interval %gs)",
                len(tickers),
                took,
                interval,
            )
            due = max(due + interval, trio.current_time())  # late: the next starts now


async def _settle_forever(ctx: GatherContext, layout: Layout, settling: trio.Lock) -> None:
    """Alongside the passes: every :data:`MATCHED_CHECK_S` the answers matched late are let
    go (:func:`release_matched`), and each answer not matched is settled at its ``due``
    (its reply plus ``snapshot_poller.settle_after``, set by :func:`_polled`), so a real
    difference holds the ingest watermark that long, not until the next pass."""
    while True:
        pending = [w.due for w in ctx.processor.watches.values() if w.due is not None]
        await trio.sleep_until(min([trio.current_time() + MATCHED_CHECK_S, *pending]))
        release_matched(ctx)
        now = trio.current_time()
        due = [t for t, w in ctx.processor.watches.items() if w.due is not None and w.due <= now]
        if due:
            async with settling:
                await settle_mismatches(ctx, layout, due)


def _hold_key(ticker: str) -> tuple[str, str]:
    """The store's watermark hold of a REST answer not matched yet (:func:`_polled`)."""
    return ("rest-watch", ticker)


def release_matched(ctx: GatherContext) -> None:
    """End the watches whose REST answer the live book reached after the reply (deltas in
    flight: no difference, ``kalshi_snapshot_in_flight_total``) and release their
    watermark holds, without waiting for their settling."""
    watches = ctx.processor.watches
    matched = [t for t, w in watches.items() if w.target is not None and w.matched]
    for ticker in matched:
        del watches[ticker]
        ctx.release(_hold_key(ticker))
    metrics.SNAPSHOT_IN_FLIGHT.inc(len(matched))


async def settle_mismatches(
    ctx: GatherContext, layout: Layout, tickers: Sequence[str] | None = None
) -> None:
    """End the watches of ``tickers`` (all when ``None``): count and resnapshot the live
    books that never matched their REST answer from the request's send until now
    (:class:`~kalshi.pipeline.frames.Watch`; :func:`poll_snapshots` settles each answer
    ``snapshot_poller.settle_after`` after its reply): a REST book carries no ``seq``
    (kalshi-api.md §4.5), so only a state the live book never passed through is a
    difference. Each such book is known wrong from its request's send: an open
    ``book_invalid`` gap of its connection from there
    (:meth:`~kalshi.pipeline.FrameProcessor.mismatch`, journaled as a ``gap`` marker), the
    book stale, and the gap closed by the resnapshot, so the deduplicator takes no row of
    that stretch from this gatherer (docs/data-model.md, ``gaps``). Until then the
    store's ingest watermark is held at the send of every answer not matched at its reply
    (:func:`_polled`), so the gap row reaches the database before the deduplicator may
    merge past its start; the holds go once the gap rows are handed to the store."""
    processor = ctx.processor
    ended = list(processor.watches) if tickers is None else tickers
    since = {t: processor.watches[t].since for t in ended if t in processor.watches}
    mismatched, late = processor.unwatch(list(since))
    metrics.SNAPSHOT_IN_FLIGHT.inc(late)
    try:
        await _record_mismatches(ctx, layout, mismatched, since)
    finally:
        for ticker in since:
            ctx.release(_hold_key(ticker))


async def _record_mismatches(
    ctx: GatherContext, layout: Layout, mismatched: list[str], since: dict[str, int]
) -> None:
    """:func:`settle_mismatches` of the books never matched: their gaps and resnapshots."""
    processor = ctx.processor
    if not mismatched:
        return
    metrics.SNAPSHOT_MISMATCHES.inc(len(mismatched))
    log.info(
        "%d live book(s) differ from REST (%s); book_invalid gaps, resnapshotting",
        len(mismatched),
        named(mismatched),
    )
    for ticker in mismatched:
        detail = f"{ticker}: live book never matched its REST order book; resnapshot"
        log.debug("%s", detail)
        row = processor.mismatch(ticker, since[ticker], detail)
        if row is not None:
            await ctx.gap(row)  # journaled, then the book stale: no frame between
    layout.resnapshot(mismatched, "rest_mismatch")  # counted when asked for, as "gap" was


@define
class _Request:
    """One ``GET /markets/orderbooks`` of a pass: its tickers, then its answer or error."""

    tickers: list[str]
    done: trio.Event = Factory(trio.Event)
    answer: tuple[dict[str, Any], bytes, list[BookSnapshot]] | None = None
    error: Exception | None = None


async def snapshot_pass(
    ctx: GatherContext, rest: RestClient, tickers: Sequence[str], in_flight: int
) -> list[str]:
    """One pass over ``tickers``: their books 100 a request, up to ``in_flight`` requests
    in flight (the client's token bucket stays the bound on requests per second; it retries
    429s and 5xx). Answers are handled in the order of the tickers: each body journaled
    (``kind: rest``) before its rows are stored, each book compared with the live one.
    A request that fails for good (:class:`NetError`) is logged and its markets skipped
    until the next pass; any other error (a body that does not decode) is raised once the
    requests in flight are cancelled. A pass's failed requests and crossed REST books are
    one WARNING line each (count, first tickers), each request or book at DEBUG. Returns
    the tickers whose trusted live book has not
    been in the state of their answer from the request's send to its reply: they stay
    watched (:meth:`~kalshi.pipeline.FrameProcessor.watch`) for the deltas still on their
    way until ``snapshot_poller.settle_after`` after the reply, when :func:`poll_snapshots`
    counts those never matched (:func:`settle_mismatches`)."""
    mismatched: list[str] = []
    crossed: list[str] = []  # markets whose REST book is crossed: one line for the pass
    failed: list[tuple[int, str]] = []  # requests failed for good: (markets, error)
    window = trio.Semaphore(in_flight)  # requests sent but not yet handled
    failure: Exception | None = None

    async def fetch(request: _Request) -> None:
        sent = ctx.wall_us()
        for ticker in request.tickers:  # the live states from the send on
            ctx.processor.watch(ticker, sent)
        try:
            request.answer = await rest.orderbooks_page(request.tickers)
        except Exception as exc:  # handled (or raised) in order, below
            request.error = exc
        request.done.set()

    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[_Request](math.inf)

        async def dispatch() -> None:
            async with send:
                for i in range(0, len(tickers), ORDERBOOKS_PER_REQUEST):
                    await window.acquire()
                    request = _Request(list(tickers[i : i + ORDERBOOKS_PER_REQUEST]))
                    nursery.start_soon(fetch, request)
                    send.send_nowait(request)

        nursery.start_soon(dispatch)
        async with receive:
            async for request in receive:
                await request.done.wait()
                batch = request.tickers
                if isinstance(request.error, NetError):
                    log.debug(
                        "snapshot poll of %d markets from %s failed: %s",
                        len(batch),
                        batch[0],
                        request.error,
                    )
                    failed.append((len(batch), str(request.error)))
                elif request.error is not None:
                    failure = request.error
                    nursery.cancel_scope.cancel()
                    break
                else:
                    assert request.answer is not None
                    params, body, snaps = request.answer
                    now = ctx.wall_us()
                    if ctx.journal is not None:  # before its rows are made, as a frame is
                        ctx.journal.record_rest(
                            now, ctx.mono_us(), body, path=ORDERBOOKS_PATH, params=params
                        )
                    for snap in snaps:
                        mismatched.extend(await _polled(ctx, snap, now, crossed))
                watches = ctx.processor.watches
                for ticker in batch:  # no answer (failed, or not in it): stop recording
                    watch = watches.get(ticker)
                    if watch is not None and watch.target is None:
                        del watches[ticker]
                window.release()
    if crossed:
        log.warning(
            "%d crossed REST book(s) (%s): each a book_invalid gap row, counted in"
            " kalshi_crossed_book_frames; details at DEBUG",
            len(crossed),
            named(crossed),
        )
    if failed:
        log.warning(
            "snapshot pass: %d request(s) failed (%d markets skipped until the next pass),"
            " last: %s; each at DEBUG",
            len(failed),
            sum(n for n, _ in failed),
            failed[-1][1],
        )
    if failure is not None:
        raise failure
    return mismatched


async def _polled(
    ctx: GatherContext, snap: BookSnapshot, now: int, crossed: list[str]
) -> list[str]:
    """Store one polled book; ``[ticker]`` when the trusted live book has not been in its
    state since the request was sent (then it is watched for,
    :class:`~kalshi.pipeline.frames.Watch`). A crossed book's ticker is added to
    ``crossed`` (the pass logs them in one line)."""
    ticker = snap.ticker
    await ctx.sink.put("orderbook_snapshots", polled_row(snap, ctx.gatherer_id, now))
    polled = OrderBook.from_snapshot(snap)
    bid, ask = polled.best_yes_bid(), polled.best_yes_ask()
    if bid is not None and ask is not None and bid[0] >= ask[0]:  # counted like the live path
        ctx.processor.counts["crossed_book_frames"] += 1
        metrics.CROSSED_BOOK_FRAMES.inc()
        detail = f"{ticker}: crossed REST book: yes bid {bid[0]} >= yes ask {ask[0]}"
        log.debug("%s", detail)
        crossed.append(ticker)
        gap = GapRow(
            start_ts=now,
            end_ts=None,
            gatherer_id=ctx.gatherer_id,
            conn_id=0,
            sid=None,
            ticker=ticker,
            kind="book_invalid",
            expected_seq=None,
            got_seq=None,
            detail=detail,
        )
        await ctx.gap(gap)
    live = ctx.processor.books.get(ticker)
    watch = ctx.processor.watches.get(ticker)
    if live is None or ticker in ctx.processor.stale:
        ctx.processor.watches.pop(ticker, None)  # nothing trusted to compare with
        return []
    if watch is None:
        watch = ctx.processor.watch(ticker, now)  # not sent by snapshot_pass: from now on
    if watch.answered(polled, live):
        del ctx.processor.watches[ticker]
        if live != polled:
            metrics.SNAPSHOT_IN_FLIGHT.inc()
        return []
    # Maybe wrong since the send: the gap row would start there, so the watermark stays
    # there until the answer is matched (release_matched) or settled (settle_mismatches),
    # settle_after from now at the latest.
    watch.due = trio.current_time() + float(ctx.cfg.snapshot_poller.settle_after)
    ctx.hold(_hold_key(ticker), watch.since)
    return [ticker]
