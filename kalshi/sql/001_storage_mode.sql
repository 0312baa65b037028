-- Storage mode: TimescaleDB when the extension is installed and preloaded, plain PostgreSQL
-- otherwise. The choice is recorded in kalshi_settings ('storage_mode') and shown by
-- `kalshi db status`. TimescaleDB installed but missing from shared_preload_libraries ends the
-- session with a FATAL on CREATE EXTENSION (no handler can catch it), so it is checked first.
CREATE TABLE IF NOT EXISTS kalshi_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       OR current_setting('shared_preload_libraries') !~ '(^|[ ,])timescaledb($|[ ,])' THEN
        INSERT INTO kalshi_settings (key, value) VALUES ('storage_mode', 'postgresql')
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        INSERT INTO kalshi_settings (key, value) VALUES ('storage_mode', 'timescaledb')
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO kalshi_settings (key, value) VALUES ('storage_mode', 'postgresql')
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
        RAISE NOTICE 'timescaledb unavailable (%), using plain PostgreSQL', SQLERRM;
    END;
END
$$;

-- Microseconds since the epoch: the time unit of every *_ts column.
CREATE OR REPLACE FUNCTION kalshi_now_us() RETURNS BIGINT
    LANGUAGE SQL STABLE
    AS $$ SELECT (extract(epoch FROM now()) * 1000000)::BIGINT $$;
