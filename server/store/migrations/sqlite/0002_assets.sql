-- One row per asset: its first and last candle and how many are stored, kept by every insert in
-- the same transaction as the candles, so listing assets and checking an asset's freshness never
-- scan the candles. Filled from the candles already stored.
CREATE TABLE assets (
    asset TEXT PRIMARY KEY NOT NULL,
    first_open_time BIGINT NOT NULL,
    last_open_time BIGINT NOT NULL,
    candles BIGINT NOT NULL
);
INSERT INTO assets (asset, first_open_time, last_open_time, candles)
SELECT asset, MIN(open_time), MAX(open_time), COUNT(*) FROM candles GROUP BY asset;
