-- Access control: API keys. The secret is never stored, only its SHA-256 (hex); `scopes` is a
-- comma-separated list of `read`, `risk`, `admin`; `revoked` (Unix ms) once revoked;
-- `rate_per_minute` overrides the server's default rate limit for the key.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created BIGINT NOT NULL,
    revoked BIGINT,
    rate_per_minute BIGINT
);

-- The decision log: append-only, hash-chained, signed. `body` is the exact JSON that was hashed
-- (`hash`, SHA-256 hex) and signed (`signature`, Ed25519 hex, by the key `signer`); it holds its
-- `seq` and the previous record's hash, so an edit, a deletion or a reordering breaks the chain.
CREATE TABLE decisions (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at BIGINT NOT NULL,
    asset TEXT NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    signer TEXT NOT NULL
);
CREATE INDEX decisions_asset_at ON decisions (asset, at);

-- The exact candle windows decisions were made on (JSON), by their hash (BLAKE3 of their values,
-- hex), shared by every decision on the same window.
CREATE TABLE decision_inputs (
    hash TEXT PRIMARY KEY,
    candles TEXT NOT NULL
);

-- Where each artifact a decision names was loaded from (kept while a decision refers to it).
CREATE TABLE decision_models (
    model_id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    dir TEXT NOT NULL
);

-- Every public key that signed a record (the auditor checks them against `GET /v1/keys`).
CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    first_used BIGINT NOT NULL
);
