-- Hourly candles per asset, keyed by asset and open time (Unix ms, UTC).
CREATE TABLE candles (
    asset TEXT NOT NULL,
    open_time BIGINT NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    quote_volume DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (asset, open_time)
);
