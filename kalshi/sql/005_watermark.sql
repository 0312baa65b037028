-- What a gatherer guarantees is in its database: every row it received before
-- complete_before (µs) is written. Rows can reach the database late (a batch spooled while
-- the database was down is written when it is back); the deduplicator reads no further
-- than this, so it never moves its cursors past rows that are still on their way.
CREATE TABLE IF NOT EXISTS ingest_watermark (
    gatherer_id     TEXT PRIMARY KEY,
    complete_before BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
