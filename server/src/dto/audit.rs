//! Bodies of the decision-log routes.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{DecisionBody, DecisionModel};

/// One signing key of the decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyDto {
    /// Key id: the first 16 hex digits of the public key's SHA-256 (`signer` of the records).
    pub key_id: String,
    /// `Ed25519`.
    pub algorithm: String,
    /// The public key, hex (32 bytes).
    pub public_key: String,
    /// When a service first started its decision log with it on this store, RFC 3339 (a key
    /// is recorded then, before it signs: a replica that never decided is listed too).
    pub first_used: String,
    /// Whether this service signs with it now.
    pub current: bool,
}

/// The end of the chain: pin it to notice a truncated log later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainHead {
    /// Records in the log (the last one's sequence number).
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// Answer of `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeysResponse {
    /// Every key a service has started its decision log with on this store (those that signed
    /// its records among them), this service's included.
    pub keys: Vec<SigningKeyDto>,
    /// The chain's end now (absent while the log is empty).
    pub head: Option<ChainHead>,
}

/// One stored record: the exact signed text, the row's fields beside it, and what it says. One
/// record per line (e.g. `jq -c '.decisions[]'` over the pages) is the export `verify --export`
/// checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionRecord {
    /// Position in the chain.
    pub seq: i64,
    /// Decision id.
    pub id: String,
    /// When it was made, Unix ms (as the row stores it; the signed body holds it too).
    pub at: i64,
    /// The asset (as the row stores it; the signed body holds it too).
    pub asset: String,
    /// SHA-256 of `body`, hex.
    pub hash: String,
    /// Ed25519 signature of the hash's 32 bytes, hex.
    pub signature: String,
    /// Id of the signing key (`GET /v1/keys`).
    pub signer: String,
    /// The exact text hashed and signed.
    pub body: String,
    /// The same, parsed; null when the stored text does not parse (an altered record: it is
    /// still returned, so that `verify` can name it).
    pub decision: Option<DecisionBody>,
}

/// Answer of `GET /v1/decisions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionPage {
    /// Records in chain order.
    pub decisions: Vec<DecisionRecord>,
    /// Pass as `after` for the next page (null on the last).
    pub next_after: Option<i64>,
}

/// Query of `GET /v1/decisions`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DecisionQuery {
    /// Only this asset's.
    pub asset: Option<String>,
    /// From this time (RFC 3339, a date, or Unix ms), inclusive.
    pub from: Option<String>,
    /// To this time, inclusive.
    pub to: Option<String>,
    /// After this sequence number (the previous page's `next_after`); default: from the lowest
    /// stored, so a row slipped in below the chain is exported (and fails `verify`).
    pub after: Option<i64>,
    /// Records per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Answer of `POST /v1/decisions/{id}/replay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayResponse {
    /// The decision.
    pub decision_id: String,
    /// The artifact and policy it was made and replayed with.
    pub model: DecisionModel,
    /// Whether the recomputed answer equals the recorded one exactly.
    pub identical: bool,
    /// The recorded answer.
    #[schema(value_type = Object)]
    pub recorded: serde_json::Value,
    /// The recomputed answer.
    #[schema(value_type = Object)]
    pub replayed: serde_json::Value,
}
