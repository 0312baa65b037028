-- TimescaleDB mode: hypertables (the seed's chunk intervals), compression, and the
-- continuous aggregate trades_1m. Plain mode: a view trades_1m with the same columns.
-- trades_1m: 1-minute OHLCV per market; bucket is the minute start in µs, prices in
-- hundred-thousandths of a dollar, volume in hundredths of a contract.
DO $$
DECLARE
    mode TEXT := (SELECT value FROM kalshi_settings WHERE key = 'storage_mode');
    t RECORD;
BEGIN
    IF mode = 'timescaledb' THEN
        FOR t IN SELECT * FROM (VALUES
            ('trades', 'exchange_ts', 86400000000::BIGINT, 'exchange_ts'),
            ('orderbook_deltas', 'exchange_ts', 3600000000::BIGINT, 'exchange_ts'),
            ('orderbook_snapshots', 'snapshot_ts', 86400000000::BIGINT, 'snapshot_ts'),
            ('tickers', 'exchange_ts', 3600000000::BIGINT, 'exchange_ts'),
            ('market_lifecycle', 'exchange_ts', 86400000000::BIGINT, 'exchange_ts')
        ) AS v(name, time_column, chunk, orderby)
        LOOP
            PERFORM create_hypertable(t.name::regclass, t.time_column,
                                      chunk_time_interval => t.chunk);
            PERFORM set_integer_now_func(t.name::regclass, 'kalshi_now_us');
            EXECUTE format(
                'ALTER TABLE %I SET (timescaledb.compress, '
                'timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
                t.name, 'ticker', t.orderby);
            -- Compress chunks older than 7 days (µs).
            PERFORM add_compression_policy(t.name::regclass, 604800000000::BIGINT);
        END LOOP;
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW trades_1m WITH (timescaledb.continuous) AS
            SELECT ticker,
                   time_bucket(60000000::BIGINT, exchange_ts) AS bucket,
                   first(price, exchange_ts) AS open,
                   max(price) AS high,
                   min(price) AS low,
                   last(price, exchange_ts) AS close,
                   sum(size) AS volume,
                   count(*) AS trade_count
            FROM trades
            GROUP BY ticker, time_bucket(60000000::BIGINT, exchange_ts)
            WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('trades_1m',
            start_offset => 86400000000::BIGINT,
            end_offset => 60000000::BIGINT,
            schedule_interval => INTERVAL '1 minute');
    ELSE
        CREATE VIEW trades_1m AS
        SELECT ticker,
               (exchange_ts / 60000000) * 60000000 AS bucket,
               (array_agg(price ORDER BY exchange_ts, trade_id))[1] AS open,
               max(price) AS high,
               min(price) AS low,
               (array_agg(price ORDER BY exchange_ts DESC, trade_id DESC))[1] AS close,
               sum(size) AS volume,
               count(*) AS trade_count
        FROM trades
        GROUP BY ticker, (exchange_ts / 60000000) * 60000000;
    END IF;
END
$$;
