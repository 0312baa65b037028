-- A connection receives each exchange message once, so two rows of one connection with the
-- same identity (tickers: market, exchange time, content; market_lifecycle: market, event
-- type, payload) are two messages: a top of book that moved and moved back within one ms, a
-- repeated pause. Production keeps, per identity, as many rows as the most any single
-- connection holds: the deduplicator reads each gatherer row with its occurrence (1 + the
-- rows of its connection and identity before it, frame order) and stores it as part of the
-- identity (kalshi/dedup/tables.py). In a gatherer's own table it stays 1.
ALTER TABLE tickers ADD COLUMN occurrence INTEGER NOT NULL DEFAULT 1;
ALTER TABLE market_lifecycle ADD COLUMN occurrence INTEGER NOT NULL DEFAULT 1;
