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
* ``markets``: upserted by ticker, the newest ``updated_at`` wins.

WebSocket snapshots and deltas go through the order-book merge instead
(:mod:`kalshi.dedup.merge`); ``gaps`` of the gatherers are read by the merge and not copied.
"""

from __future__ import annotations

from attrs import frozen

from kalshi.store import TABLES

__all__ = ["DIGEST_BUCKET_US", "EXPORT_TABLES", "KEYED", "KeyedTable", "digest_sql"]

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

    @property
    def digested(self) -> bool:
        """Whether buckets are compared by digest first (not for upserted tables: a newer
        version of a row must always be read)."""
        return not self.upsert


def digest_sql(table: KeyedTable) -> str:
    """Per time bucket: how many distinct events and the sum of their identity hashes, for
    ``low < time <= high`` (parameters: bucket width, low, high). The same statement runs
    on a gatherer and on production; equal digests mean the gatherer adds nothing there."""
    identity = ", ".join(table.identity)
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
            ),
        ),
        KeyedTable(
            "market_lifecycle",
            "received_at",
            TABLES["market_lifecycle"].key,
            ("ticker", "event_type", "payload"),
            timed=False,
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
