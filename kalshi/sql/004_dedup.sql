-- The deduplicator's bookkeeping (used in the production database; empty elsewhere).
-- Every row here is written in the same transaction as the production rows it covers.

-- Per gatherer and table: the key of the last merged row (keyset cursor, JSON array in
-- key order) and the gatherer time (µs) merged up to.
CREATE TABLE dedup_cursors (
    gatherer_id  TEXT   NOT NULL,
    table_name   TEXT   NOT NULL,
    position     JSONB  NOT NULL,
    horizon      BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (gatherer_id, table_name)
);

-- Per market: where its merged order-book stream ends (see kalshi/dedup/merge.py).
CREATE TABLE dedup_books (
    ticker           TEXT    PRIMARY KEY,
    seq              BIGINT  NOT NULL,
    gatherer_id      TEXT    NOT NULL,
    conn_id          BIGINT  NOT NULL,
    frame_no         BIGINT  NOT NULL,
    received_at      BIGINT  NOT NULL,
    segment_start    BIGINT  NOT NULL,
    exchange_ts      BIGINT  NOT NULL,
    yes_bids         JSONB   NOT NULL,
    no_bids          JSONB   NOT NULL,
    waiting          BOOLEAN NOT NULL,
    last_side        BOOLEAN,
    last_price       INTEGER,
    last_size_delta  BIGINT,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX dedup_books_waiting ON dedup_books (ticker) WHERE waiting;

-- Exported windows: one row per (table, window start), replaced on re-export.
CREATE TABLE dedup_exports (
    table_name    TEXT   NOT NULL,
    window_start  BIGINT NOT NULL,
    window_end    BIGINT NOT NULL,
    rows          BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    manifest      JSONB  NOT NULL,
    exported_at   BIGINT NOT NULL,
    PRIMARY KEY (table_name, window_start)
);
