-- The forecast ledger: what the service would serve for an asset at a daily origin (Unix ms, the
-- close of the last candle used) with a model, as JSON; and, once the target windows have
-- passed, what happened (JSON), scored from the stored candles.
CREATE TABLE ledger (
    asset TEXT NOT NULL,
    origin BIGINT NOT NULL,
    model_id TEXT NOT NULL,
    record TEXT NOT NULL,
    outcome TEXT,
    PRIMARY KEY (asset, origin, model_id)
);
