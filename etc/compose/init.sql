-- Runs once, when the timescaledb volume is first created (docker-entrypoint-initdb.d).
-- kalshi_ts (POSTGRES_DB) is production; each gatherer of the `app` profile has its own
-- database. Tables come from `kalshi db migrate` (sql/), not from here.
CREATE DATABASE gatherer_a;
CREATE DATABASE gatherer_b;
\c kalshi_ts
CREATE EXTENSION IF NOT EXISTS timescaledb;
\c gatherer_a
CREATE EXTENSION IF NOT EXISTS timescaledb;
\c gatherer_b
CREATE EXTENSION IF NOT EXISTS timescaledb;
