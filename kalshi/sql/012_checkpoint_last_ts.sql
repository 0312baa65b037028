-- dedup_books.exchange_ts is the newest exchange time merged into a market's stream; the
-- last merged row's own time may be earlier (a delta's time can run backwards on its
-- connection). The next pass finds that row in another gatherer's recording by its own time
-- (kalshi/dedup/merge.py, _match): with the newest time instead it found nothing and left a
-- merge_hole over a stretch that gatherer had. Rows written before this migration keep the
-- time they had (what the merge used then).
ALTER TABLE dedup_books ADD COLUMN last_ts BIGINT;
UPDATE dedup_books SET last_ts = exchange_ts;
ALTER TABLE dedup_books ALTER COLUMN last_ts SET NOT NULL;
