"""How each table is read from a gatherer and merged into production.

*Keyed* tables are read by arrival: a cursor on the time the gatherer received each row
(``received_at``; ``snapshot_ts`` of REST snapshots and ``updated_at`` of markets are
receipt times too) up to a horizon no later than the gatherer's ingest watermark, so a row
received late is merged when it arrives, however old its exchange time, and exactly once.
Rows are inserted so that a row already in production is dropped:

* ``trades``: by ``trade_id`` (the primary key ``(exchange_ts, trade_id)``);
* ``tickers`` and REST ``orderbook_snapshots``: by their exchange identity, the market, the
  exchange time and the content, never by gatherer, connection or frame (two gatherers'
  copies of one exchange message differ only there);
* ``market_lifecycle``: by the market (or event), the event type and the payload, not the
  time: most lifecycle messages carry none (kalshi-api.md §3.5: only ``determined`` and
  ``settled`` do, inside the payload), so their ``exchange_ts`` is the gatherer's receipt,
  which differs per gatherer;
* ``markets``: upserted by ticker, the newest ``updated_at`` wins; a version equal to the
  stored one but for ``updated_at`` and ``gatherer_id`` is not written
  (:func:`kalshi.store.staging.upsert_latest`).

WebSocket snapshots and deltas go through the order-book merge instead
(:mod:`kalshi.dedup.merge`); ``gaps`` of the gatherers are read by the merge and not copied.
"""

from __future__ import annotations

from attrs import frozen

from kalshi.store import TABLES

__all__ = [
    "DIGEST_BUCKET_US",
    "EXPORT_TABLES",
    "KEYED",
    "KeyedTable",
    "digest_sql",
    "identity_sql",
    "occurrence_sql",
]

DIGEST_BUCKET_US = 1_000_000
"""Width of the time buckets whose digests are compared before rows are read."""

EXPORT_TABLES = {
    "trades": "exchange_ts",
    "orderbook_deltas": "exchange_ts",
    "orderbook_snapshots": "snapshot_ts",
    "tickers": "exchange_ts",
    "market_lifecycle": "exchange_ts",
    "gaps": "start_ts",
}
"""The tables exported to S3 and the time (µs) that places a row in a window
(:mod:`kalshi.dedup.export`); ``snapshot_ts`` is a receipt, in a gatherer's clock."""


@frozen
class KeyedTable:
    name: str
    time: str  # when the gatherer received the row, µs: the cursor's column
    key: tuple[str, ...]  # keyset order (the table's key, :attr:`TableSpec.key`)
    identity: tuple[str, ...]  # what makes two rows the same event in production
    # whether the identity holds the exchange time (key[0]), matched first through the
    # (ticker, time) index; without it stored rows are matched by ticker and identity
    timed: bool = True
    filter: str = ""  # an extra SQL condition on the gatherer's rows
    upsert: bool = False
    # whether ``occurrence`` is part of the identity: two rows of one connection with the
    # same identity are two messages, copies exist only across connections (docs/dedup.md)
    counted: bool = False

    @property
    def digested(self) -> bool:
        """Whether buckets are compared by digest first (not for upserted tables: a newer
        version of a row must always be read)."""
        return not self.upsert


def occurrence_sql(table: KeyedTable) -> str:
    """The occurrence of a gatherer row of ``table`` (its rows unaliased): 1 + the rows of
    the same gatherer, connection and identity received before it (``frame_no`` order); a
    connection receives each exchange message once, so these are distinct messages. Found
    through the ``(ticker, exchange_ts)`` index (by ticker alone for an untimed identity)."""
    name = table.name
    same = [c for c in table.identity if c != "occurrence"]
    if not table.timed:
        same = [c for c in same if c != "exchange_ts"]
    # exchange_ts by '=' (NOT NULL where it is part of the identity): with the ticker, an
    # index condition on (ticker, exchange_ts); IS NOT DISTINCT FROM is not indexable, and a
    # busy market's every row would be scanned for each of its rows
    match = " AND ".join(
        f"p.{c} = {name}.{c}" if c == "exchange_ts" else f"p.{c} IS NOT DISTINCT FROM {name}.{c}"
        for c in ("gatherer_id", "conn_id", *same)
        if c != "ticker"
    )
    return (
        f"(1 + (SELECT count(*) FROM {name} p WHERE p.ticker = {name}.ticker"
        f" AND p.frame_no < {name}.frame_no AND {match}))"
    )


def identity_sql(table: KeyedTable, *, computed: bool = False) -> str:
    """``table``'s identity columns as SQL; ``computed``: a gatherer's, whose stored
    ``occurrence`` is 1 and is computed instead (:func:`occurrence_sql`)."""
    return ", ".join(
        occurrence_sql(table) if c == "occurrence" and computed else c for c in table.identity
    )


def digest_sql(table: KeyedTable, *, computed: bool = False) -> str:
    """Per time bucket: how many distinct events and the sum of their identity hashes, for
    ``low < time <= high`` (parameters: bucket width, low, high). The same statement runs
    on a gatherer (``computed``: occurrences counted, :func:`identity_sql`) and on
    production; equal digests mean the gatherer adds nothing there. A bucket holding
    A, B, A on one connection digests three events, production's A, B two."""
    identity = identity_sql(table, computed=computed)
    where = f"{table.time} > %s AND {table.time} <= %s"
    if table.filter:
        where += f" AND {table.filter}"
    return (
        "SELECT bucket, count(*), sum(h) FROM (SELECT DISTINCT"
        f" {table.time} / %s AS bucket, hashtextextended(ROW({identity})::text, 0) AS h"
        f" FROM {table.name} WHERE {where}) AS d GROUP BY bucket"
    )


KEYED: dict[str, KeyedTable] = {
    t.name: t
    for t in (
        KeyedTable("trades", "received_at", TABLES["trades"].key, TABLES["trades"].key),
        KeyedTable(
            "tickers",
            "received_at",
            TABLES["tickers"].key,
            (
                "ticker",
                "exchange_ts",
                "yes_bid",
                "yes_ask",
                "last_price",
                "volume",
                "open_interest",
                "dollar_volume",
                "dollar_open_interest",
                "yes_bid_size",
                "yes_ask_size",
                "last_trade_size",
                "occurrence",
            ),
            counted=True,
        ),
        KeyedTable(
            "market_lifecycle",
            "received_at",
            TABLES["market_lifecycle"].key,
            ("ticker", "event_type", "payload", "occurrence"),
            timed=False,
            counted=True,
        ),
        KeyedTable(
            "orderbook_snapshots",
            "snapshot_ts",
            TABLES["orderbook_snapshots"].key,
            ("ticker", "source", "snapshot_ts", "exchange_ts", "yes_bids", "no_bids"),
            filter="source = 'rest'",
        ),
        KeyedTable(
            "markets",
            "updated_at",
            ("updated_at", *TABLES["markets"].key),  # read in update order
            TABLES["markets"].key,
            upsert=True,
        ),
    )
}
