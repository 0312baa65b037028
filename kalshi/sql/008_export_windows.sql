-- Export windows close by what each gatherer committed, and rows that reach production after
-- their window was exported are exported again (kalshi/dedup/export.py, docs/dedup.md).

-- The exchange time (µs) up to which a gatherer's rows of a table are merged: its cursor (a
-- receipt, in the gatherer's own clock) less the gatherer's offset measured on its own rows
-- (received_at - exchange_ts). received_to: the receipt (its clock) before which it will add
-- no row of the table: the cursor, or for finished history (no watermark) merged to its end,
-- its settled time. NULL until the deduplicator writes the cursor again.
ALTER TABLE dedup_cursors
    ADD COLUMN IF NOT EXISTS reached BIGINT,
    ADD COLUMN IF NOT EXISTS received_to BIGINT;

-- digest: what the export held (keyed tables: "rows:<count>"; the book stream: a hash of its
-- per-market seq ranges); partial: exported before it was closed (--until, --all-windows);
-- stale: rows may have reached production since (to check, and rewrite if they did);
-- rewrites: how often it was exported again because rows arrived late.
ALTER TABLE dedup_exports
    ADD COLUMN IF NOT EXISTS digest TEXT,
    ADD COLUMN IF NOT EXISTS partial BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS stale BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS rewrites INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS dedup_exports_stale ON dedup_exports (table_name) WHERE stale;

-- Per exported table: the oldest export time (µs) of the rows inserted since the exporter
-- last looked. Written in the transaction of the rows; the exporter turns it into stale
-- windows and deletes it in one transaction.
CREATE TABLE IF NOT EXISTS dedup_touched (
    table_name  TEXT   PRIMARY KEY,
    since       BIGINT NOT NULL
);

-- The book stream is exported by position: a market's deltas and snapshots by seq
-- (production only: a gatherer's rows have no seq, so these stay empty there).
CREATE INDEX IF NOT EXISTS orderbook_deltas_ticker_seq ON orderbook_deltas (ticker, seq)
    WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS orderbook_snapshots_ticker_seq ON orderbook_snapshots (ticker, seq)
    WHERE seq IS NOT NULL;
