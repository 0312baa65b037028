-- The deduplicator reads each gatherer's rows in the order they were committed, never by a
-- time: a row that reaches a gatherer's database after the merge passed its receive time (a
-- replay into the database, a spool drained after an outage, a REST backfill of old trades,
-- a late frame) is merged when it is committed, exactly once (outside tester, item 2:
-- trades replayed after the order books never reached production).
--
-- ingest_xid: the 64-bit id of the transaction that wrote the row (pg_current_xact_id(),
-- never wraps). Every transaction below the current snapshot's xmin has ended, so the rows
-- with an ingest_xid below it are final: that is the merge's safe horizon, and its cursor
-- (dedup_cursors.committed) is an ingest_xid. Rows written before this migration keep NULL:
-- the deduplicator reads those once by their receipt (the rule before), then by commit.
-- markets rows are updated in place (newest updated_at wins): an update takes the
-- updating transaction's id, so the new version is read again.
DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['trades', 'orderbook_deltas', 'orderbook_snapshots', 'tickers',
                             'market_lifecycle', 'markets', 'gaps']
    LOOP
        -- nullable, then the default: no table rewrite, existing rows stay NULL
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS ingest_xid BIGINT', t);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN ingest_xid'
                       ' SET DEFAULT (pg_current_xact_id()::text::bigint)', t);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (ingest_xid)', t || '_ingest_xid', t);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION kalshi_ingest_xid() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN NEW.ingest_xid := pg_current_xact_id()::text::bigint; RETURN NEW; END $$;
DROP TRIGGER IF EXISTS markets_ingest_xid ON markets;
CREATE TRIGGER markets_ingest_xid BEFORE UPDATE ON markets
    FOR EACH ROW EXECUTE FUNCTION kalshi_ingest_xid();

-- committed: the gatherer's rows of the table with ingest_xid below it are merged (NULL: a
-- cursor from before, whose rows with NULL ingest_xid are still read by receipt first).
ALTER TABLE dedup_cursors ADD COLUMN IF NOT EXISTS committed BIGINT;
