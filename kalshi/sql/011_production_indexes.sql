-- orderbook_deltas_ticker_seq and orderbook_snapshots_ticker_seq (008) serve the export's
-- reads of production by position (kalshi/dedup/export.py). 008 assumed a gatherer's rows
-- have no seq, so the indexes would stay empty there; a gatherer's deltas carry the
-- subscription's seq, so every delta a gatherer wrote paid for an index nothing reads:
-- 3.4 of 8.2 µs of the server's CPU a row (COPY of 5 000-row batches, issue 20). A
-- database with no deduplicator cursor (a gatherer's, or a production database not merged
-- into yet) drops them; the deduplicator creates them on production when it opens it
-- (kalshi.dedup.production.PRODUCTION_INDEXES), so a production database keeps them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM dedup_cursors) THEN
        DROP INDEX IF EXISTS orderbook_deltas_ticker_seq;
        DROP INDEX IF EXISTS orderbook_snapshots_ticker_seq;
    END IF;
END
$$;
