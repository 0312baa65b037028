-- What was exported is recorded per target (an S3 bucket and prefix, or a directory): an
-- export to a local directory after one to S3 writes every window again, not "no closed
-- window to export" (outside tester, item 10). Rows from before belong to the S3 target
-- that exports first after this migration ('' until then: kalshi/dedup/export.py).
ALTER TABLE dedup_exports ADD COLUMN IF NOT EXISTS target TEXT NOT NULL DEFAULT '';
ALTER TABLE dedup_exports DROP CONSTRAINT IF EXISTS dedup_exports_pkey;
ALTER TABLE dedup_exports ADD PRIMARY KEY (target, table_name, window_start);
DROP INDEX IF EXISTS dedup_exports_stale;
CREATE INDEX IF NOT EXISTS dedup_exports_stale ON dedup_exports (target, table_name) WHERE stale;
