-- Market-data tables. Column order = the row NamedTuples in kalshi/models/rows.py.
-- Units: prices in hundred-thousandths of a dollar (INTEGER, 0..100000), sizes in hundredths
-- of a contract (BIGINT, signed for deltas), times in microseconds since the epoch (BIGINT).
-- Keys: see docs/data-model.md; every key includes the time column (hypertable-compatible).

CREATE TABLE trades (
    exchange_ts     BIGINT  NOT NULL,
    received_at     BIGINT  NOT NULL,
    gatherer_id     TEXT    NOT NULL,
    ticker          TEXT    NOT NULL,
    trade_id        TEXT    NOT NULL,
    price           INTEGER NOT NULL CHECK (price BETWEEN 0 AND 100000),
    size            BIGINT  NOT NULL CHECK (size >= 0),
    taker_side      BOOLEAN NOT NULL,
    is_block_trade  BOOLEAN NOT NULL,
    source          TEXT    NOT NULL CHECK (source IN ('ws', 'rest')),
    conn_id         BIGINT  NOT NULL,
    frame_no        BIGINT  NOT NULL,
    seq             BIGINT,
    PRIMARY KEY (exchange_ts, trade_id)
);
CREATE INDEX trades_ticker_ts ON trades (ticker, exchange_ts);

CREATE TABLE orderbook_deltas (
    exchange_ts     BIGINT  NOT NULL,
    received_at     BIGINT  NOT NULL,
    gatherer_id     TEXT    NOT NULL,
    ticker          TEXT    NOT NULL,
    side            BOOLEAN NOT NULL,
    price           INTEGER NOT NULL CHECK (price BETWEEN 0 AND 100000),
    size_delta      BIGINT  NOT NULL,
    conn_id         BIGINT  NOT NULL,
    frame_no        BIGINT  NOT NULL,
    sid             BIGINT  NOT NULL,
    seq             BIGINT  NOT NULL,
    PRIMARY KEY (exchange_ts, gatherer_id, conn_id, frame_no)
);
CREATE INDEX orderbook_deltas_ticker_ts ON orderbook_deltas (ticker, exchange_ts);

CREATE TABLE orderbook_snapshots (
    snapshot_ts     BIGINT  NOT NULL,
    exchange_ts     BIGINT,
    received_at     BIGINT  NOT NULL,
    gatherer_id     TEXT    NOT NULL,
    ticker          TEXT    NOT NULL,
    source          TEXT    NOT NULL CHECK (source IN ('ws', 'rest')),
    yes_bids        JSONB   NOT NULL,
    no_bids         JSONB   NOT NULL,
    conn_id         BIGINT  NOT NULL,
    frame_no        BIGINT  NOT NULL,
    sid             BIGINT,
    seq             BIGINT,
    PRIMARY KEY (snapshot_ts, gatherer_id, ticker, source, conn_id, frame_no)
);
CREATE INDEX orderbook_snapshots_ticker_ts ON orderbook_snapshots (ticker, snapshot_ts);

CREATE TABLE tickers (
    exchange_ts          BIGINT  NOT NULL,
    received_at          BIGINT  NOT NULL,
    gatherer_id          TEXT    NOT NULL,
    ticker               TEXT    NOT NULL,
    yes_bid              INTEGER,
    yes_ask              INTEGER,
    last_price           INTEGER,
    volume               BIGINT,
    open_interest        BIGINT,
    dollar_volume        BIGINT,
    dollar_open_interest BIGINT,
    yes_bid_size         BIGINT,
    yes_ask_size         BIGINT,
    last_trade_size      BIGINT,
    conn_id              BIGINT  NOT NULL,
    frame_no             BIGINT  NOT NULL,
    PRIMARY KEY (exchange_ts, gatherer_id, conn_id, frame_no)
);
CREATE INDEX tickers_ticker_ts ON tickers (ticker, exchange_ts);

CREATE TABLE market_lifecycle (
    exchange_ts     BIGINT  NOT NULL,
    received_at     BIGINT  NOT NULL,
    gatherer_id     TEXT    NOT NULL,
    ticker          TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         JSONB   NOT NULL,
    conn_id         BIGINT  NOT NULL,
    frame_no        BIGINT  NOT NULL,
    seq             BIGINT,
    PRIMARY KEY (exchange_ts, gatherer_id, conn_id, frame_no)
);
CREATE INDEX market_lifecycle_ticker_ts ON market_lifecycle (ticker, exchange_ts);

CREATE TABLE markets (
    ticker          TEXT    PRIMARY KEY,
    event_ticker    TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    market_type     TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    open_time       BIGINT,
    close_time      BIGINT,
    updated_at      BIGINT  NOT NULL,
    gatherer_id     TEXT    NOT NULL,
    payload         JSONB   NOT NULL
);
CREATE INDEX markets_event_ticker ON markets (event_ticker);

CREATE TABLE gaps (
    start_ts        BIGINT  NOT NULL,
    end_ts          BIGINT,
    gatherer_id     TEXT    NOT NULL,
    conn_id         BIGINT  NOT NULL,
    sid             BIGINT,
    ticker          TEXT,
    kind            TEXT    NOT NULL,
    expected_seq    BIGINT,
    got_seq         BIGINT,
    detail          TEXT    NOT NULL
);
CREATE UNIQUE INDEX gaps_identity
    ON gaps (start_ts, gatherer_id, conn_id, kind, (COALESCE(ticker, '')));
CREATE INDEX gaps_ticker_ts ON gaps (ticker, start_ts);
