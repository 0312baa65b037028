-- The deduplicator reads trades, tickers and lifecycle rows by when the gatherer received
-- them (a row that arrives late is merged when it arrives, however old its exchange time).
CREATE INDEX IF NOT EXISTS trades_received ON trades (received_at);
CREATE INDEX IF NOT EXISTS tickers_received ON tickers (received_at);
CREATE INDEX IF NOT EXISTS market_lifecycle_received ON market_lifecycle (received_at);
